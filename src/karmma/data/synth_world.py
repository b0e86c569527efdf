"""SynthKitchen's generative model: what happens in a kitchen, and what each sensor can know of it.

This module is the *world* of the embedded dataset, without pixels or samples:
the verbs and nouns, which (verb, noun) pairs occur and how often, the latent
variables of one action instance, the cue each modality renders from them, and
the annotators' label noise. ``karmma.data.synth`` renders the cues into MP4
video and audio; this module computes, from the same tables, the **information
ceiling** of every modality subset: the top-1 accuracy of the Bayes-optimal
classifier that sees exactly the cues that subset renders (docs/data.md,
"SynthKitchen"). Nothing here is tuned on a trained model.

Why each property (docs/data.md argues each one from real kitchens):

* Verbs are seen in RGB by hand pose and object state (a lid on or off, a
  contact shadow, a knife, a water stream, a tilt), and more cleanly in flow,
  which measures the motion itself. Two verbs differ *only* in the speed of a
  small motion (``adjust``: a slow nudge; ``shake``: a fast small oscillation):
  sparsely sampled RGB frames alias it, flow between consecutive frames sees it.
* Nouns are seen in RGB by colour and shape; flow sees the shape of the object
  whenever the hand moves it; audio hears its material when it knocks against
  something. Look-alike nouns (same colour and shape, another material: a cup
  and a glass) are told apart only by that sound.
* Audio carries the verbs that make their own sound (running water, chopping,
  pouring, rattling); most handling is quiet.
* Frequencies are long-tailed (Zipf-like over verbs and over the nouns a verb
  takes) and only plausible pairs occur, as in EPIC-KITCHENS.
* Annotators disagree: a label is, with a small probability, a plausible
  neighbour of the true class.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from karmma.modalities import VIDEO_MODALITIES, all_subsets


@dataclass(frozen=True)
class Verb:
    name: str
    look: str  # what RGB shows (hand pose and object state); equal looks are told apart only by motion
    sound: str | None  # the verb's own sound, if any (heard whatever the object)
    moves_object: bool  # the hand moves the object: flow sees the object's shape
    knocks: bool  # the object may knock against something: audio may hear its material
    neighbours: tuple[str, ...]  # the verbs an annotator may write instead


@dataclass(frozen=True)
class Noun:
    name: str
    colour: str
    shape: str  # round, tall, flat or long
    material: str  # ceramic, glass, metal, plastic, wood or soft (soft never knocks audibly)
    neighbours: tuple[str, ...]  # the nouns an annotator may write instead


#: in EPIC-KITCHENS' order of frequency (take, put, wash, open, close ... are its most common verbs)
VERBS = (
    Verb("take", look="grasp, shadow at the start", sound=None, moves_object=True, knocks=True, neighbours=("adjust",)),
    Verb("put", look="grasp, shadow at the end", sound=None, moves_object=True, knocks=True, neighbours=("adjust",)),
    Verb("wash", look="water stream", sound="water", moves_object=True, knocks=False, neighbours=("adjust",)),
    Verb("open", look="lid off at the end", sound=None, moves_object=True, knocks=True, neighbours=("take",)),
    Verb("close", look="lid on at the end", sound=None, moves_object=True, knocks=True, neighbours=("put",)),
    Verb("cut", look="knife over the object", sound="chop", moves_object=False, knocks=False, neighbours=()),
    Verb("pour", look="tilted, liquid stream", sound="pour", moves_object=True, knocks=False, neighbours=()),
    Verb("adjust", look="held in place", sound=None, moves_object=True, knocks=True, neighbours=("take", "put")),
    Verb("shake", look="held in place", sound="rattle", moves_object=True, knocks=True, neighbours=("adjust",)),
)

#: in a kitchen's order of frequency (EPIC-KITCHENS: plate, knife, pan, bowl, cup, sponge ... are common)
NOUNS = (
    Noun("plate", "pale", "flat", "ceramic", ("bowl",)),
    Noun("knife", "grey", "long", "metal", ("spatula",)),
    Noun("pan", "grey", "flat", "metal", ("pot",)),
    Noun("bowl", "pale", "round", "ceramic", ("plate",)),
    Noun("cup", "pale", "tall", "ceramic", ("glass",)),
    Noun("sponge", "yellow", "flat", "soft", ()),
    Noun("glass", "pale", "tall", "glass", ("cup",)),
    Noun("board", "brown", "flat", "wood", ()),
    Noun("bottle", "green", "tall", "glass", ("container",)),
    Noun("onion", "orange", "round", "soft", ("tomato",)),
    Noun("container", "green", "tall", "plastic", ("bottle",)),
    Noun("pot", "grey", "round", "metal", ("pan",)),
    Noun("tomato", "red", "round", "soft", ("onion",)),
    Noun("carrot", "orange", "long", "soft", ()),
    Noun("spatula", "grey", "long", "plastic", ("knife",)),
)
VERB_NAMES = tuple(v.name for v in VERBS)
NOUN_NAMES = tuple(n.name for n in NOUNS)

#: the nouns each verb takes: only plausible pairs occur
VERB_NOUNS = {
    "take": NOUN_NAMES,
    "put": NOUN_NAMES,
    "wash": ("plate", "knife", "pan", "bowl", "cup", "glass", "board", "pot", "tomato", "carrot", "spatula"),
    "open": ("bottle", "container", "pot"),
    "close": ("bottle", "container", "pot"),
    "cut": ("onion", "tomato", "carrot"),
    "pour": ("bottle", "container", "cup", "glass", "pot", "pan"),
    "adjust": ("plate", "pan", "bowl", "board", "pot", "bottle"),
    "shake": ("bottle", "container", "pan"),
}


@dataclass(frozen=True)
class WorldSettings:
    """The probabilities of the generative model (docs/data.md gives the reason for each)."""

    verb_zipf: float = 0.8  # P(verb) ~ rank^-s
    noun_zipf: float = 0.8  # P(noun | verb) ~ rank^-s among the nouns the verb takes
    knock_audible: float = 0.4  # a knocking action of a hard object makes an audible knock
    rattle_audible: float = 0.6  # a shaken container rattles (it has something loose inside)
    audio_masked: float = 0.3  # a louder sound of the room (extractor hood, radio, talk) covers the action
    verb_label_noise: float = 0.12  # the annotator writes a neighbouring verb
    noun_label_noise: float = 0.12  # ... or a neighbouring noun
    audio_track_missing: float = 0.15  # recordings without an audio track (muted camera)


WORLD = WorldSettings()


def pair_prior(settings: WorldSettings = WORLD) -> dict[tuple[int, int], float]:
    """``{(verb id, noun id): probability}`` of the pairs that occur (sums to 1)."""
    prior = {}
    for v, verb in enumerate(VERBS):
        nouns = VERB_NOUNS[verb.name]
        weights = np.array([(NOUN_NAMES.index(n) + 1) ** -settings.noun_zipf for n in nouns])
        for n, w in zip(nouns, weights / weights.sum()):
            prior[(v, NOUN_NAMES.index(n))] = (v + 1) ** -settings.verb_zipf * float(w)
    total = sum(prior.values())
    return {pair: p / total for pair, p in prior.items()}


class Instance(NamedTuple):
    """The latent variables of one action instance that the sensors can render."""

    verb: int
    noun: int
    knock: bool  # an audible knock reveals the noun's material
    rattle: bool  # a shaken container rattles
    masked: bool  # a louder sound of the room covers the action's own sounds


@dataclass(frozen=True)
class ActionLatent:
    """One action instance and what the annotator wrote for it."""

    instance: Instance
    label_verb: int
    label_noun: int

    @property
    def verb(self) -> int:  # the true verb (the label may differ)
        return self.instance.verb

    @property
    def noun(self) -> int:
        return self.instance.noun


def _flag_probabilities(verb: Verb, noun: Noun, settings: WorldSettings) -> dict[str, float]:
    """P(flag) of each boolean latent of an instance of ``verb`` on ``noun``."""
    return {
        "knock": settings.knock_audible if verb.knocks and noun.material != "soft" else 0.0,
        "rattle": settings.rattle_audible if verb.sound == "rattle" else 0.0,
        "masked": settings.audio_masked,
    }


def _label_distribution(index: int, names: tuple[str, ...], neighbours: tuple[str, ...], noise: float) -> dict:
    if not neighbours:
        return {index: 1.0}
    out = {index: 1.0 - noise}
    for name in neighbours:
        out[names.index(name)] = out.get(names.index(name), 0.0) + noise / len(neighbours)
    return out


def verb_label_distribution(verb: int, settings: WorldSettings = WORLD) -> dict[int, float]:
    return _label_distribution(verb, VERB_NAMES, VERBS[verb].neighbours, settings.verb_label_noise)


def noun_label_distribution(noun: int, settings: WorldSettings = WORLD) -> dict[int, float]:
    return _label_distribution(noun, NOUN_NAMES, NOUNS[noun].neighbours, settings.noun_label_noise)


def sample_action(rng: np.random.Generator, settings: WorldSettings = WORLD) -> ActionLatent:
    """Draw one action instance and its annotation from the generative model."""
    pairs = pair_prior(settings)
    keys = list(pairs)
    verb, noun = keys[rng.choice(len(keys), p=np.array(list(pairs.values())))]
    flags = {
        name: bool(rng.random() < p) for name, p in _flag_probabilities(VERBS[verb], NOUNS[noun], settings).items()
    }

    def draw(distribution: dict[int, float]) -> int:
        labels = list(distribution)
        return int(labels[rng.choice(len(labels), p=np.array(list(distribution.values())))])

    label_verb = draw(verb_label_distribution(verb, settings))
    label_noun = draw(noun_label_distribution(noun, settings))
    return ActionLatent(Instance(verb, noun, **flags), label_verb, label_noun)


def cue(modality: str, instance: Instance) -> tuple:
    """What ``modality`` renders of an action instance: two instances with equal cues are
    indistinguishable from that modality, whatever the model."""
    v, n = VERBS[instance.verb], NOUNS[instance.noun]
    if modality == "V":  # hand pose and object state; the object's colour and shape
        return (v.look, n.colour, n.shape)
    if modality == "F":  # the motion itself; the object's outline when it moves
        return (v.name, n.shape if v.moves_object else None)
    if modality == "A":  # the verb's own sound (a rattle only when it rattles); the material in a knock
        if instance.masked:
            return (None, None)
        sound = v.sound if v.sound != "rattle" or instance.rattle else None
        return (sound, n.material if instance.knock else None)
    raise ValueError(f"SynthKitchen renders V, F and A, not {modality!r}")


def instances(settings: WorldSettings = WORLD):
    """Every latent instance with its probability: ``(Instance, p)``, summing to 1."""
    for (v, n), p in pair_prior(settings).items():
        flags = _flag_probabilities(VERBS[v], NOUNS[n], settings)
        for values in itertools.product((True, False), repeat=len(flags)):
            weight = p
            for value, q in zip(values, flags.values()):
                weight *= q if value else 1 - q
            if weight > 0:
                yield Instance(v, n, *values), weight


def _cue_scores(seen: Callable[[Instance], tuple], settings: WorldSettings) -> dict[str, dict]:
    """``{"verb", "noun", "action"}`` -> ``{cue: {annotated label: P(cue, label)}}``, by enumerating
    the latent instances."""
    scores: dict[str, dict] = {head: defaultdict(lambda: defaultdict(float)) for head in ("verb", "noun", "action")}
    for instance, p in instances(settings):
        cues = seen(instance)
        verbs = verb_label_distribution(instance.verb, settings)
        nouns = noun_label_distribution(instance.noun, settings)
        for lv, pv in verbs.items():
            scores["verb"][cues][lv] += p * pv
            for ln, pn in nouns.items():
                scores["action"][cues][(lv, ln)] += p * pv * pn
        for ln, pn in nouns.items():
            scores["noun"][cues][ln] += p * pn
    return scores


def _bayes_top1(seen: Callable[[Instance], tuple], settings: WorldSettings) -> dict[str, float]:
    """``{"verb_top1", "noun_top1", "action_top1"}`` (percent) of the Bayes-optimal classifier of the
    *annotated* labels that sees ``seen(instance)`` of each instance, computed exactly by enumerating
    the latent instances."""
    return {
        f"{head}_top1": round(100 * sum(max(s.values()) for s in by_cue.values()), 2)
        for head, by_cue in _cue_scores(seen, settings).items()
    }


def seen_by(modalities: tuple[str, ...]) -> Callable[[Instance], tuple]:
    """What the subset ``modalities`` renders of an instance: the tuple of their cues."""
    return lambda instance: tuple(cue(m, instance) for m in modalities)


def bayes_classifier(seen: Callable[[Instance], tuple], settings: WorldSettings = WORLD) -> Callable[[Instance], dict]:
    """The Bayes-optimal guess of the annotated labels from ``seen(instance)`` (``seen_by(("F",))``,
    or e.g. the verb alone): ``instance -> {"verb": id, "noun": id, "action": (verb id, noun id)}``.
    Scored on each clip's latents (``SynthKitchen_latents.csv``) it is the ceiling clip by clip, so a
    model can be compared with it on any group of clips (per verb, say)."""
    guesses = {
        head: {cues: max(s, key=s.get) for cues, s in by_cue.items()}
        for head, by_cue in _cue_scores(seen, settings).items()
    }
    return lambda instance: {head: table[seen(instance)] for head, table in guesses.items()}


def information_ceilings(modalities: tuple[str, ...] = VIDEO_MODALITIES, settings: WorldSettings = WORLD) -> dict:
    """``{"V+F+A": {"verb_top1", "noun_top1", "action_top1"}, ...}`` (percent) for every non-empty
    subset: the Bayes-optimal top-1 given exactly the cues the subset renders."""
    return {"+".join(subset): _bayes_top1(seen_by(subset), settings) for subset in all_subsets(modalities)}


def prior_top1(settings: WorldSettings = WORLD) -> dict[str, float]:
    """Top-1 (percent) of always answering the most frequent annotated verb, noun and action:
    what a model knows with no cue at all."""
    return {head.removesuffix("_top1"): value for head, value in _bayes_top1(lambda instance: (), settings).items()}


def ceiling_table(modalities: tuple[str, ...] = VIDEO_MODALITIES, settings: WorldSettings = WORLD) -> str:
    """The ceilings as a markdown table, with each subset's action ceiling over the full set's."""
    ceilings = information_ceilings(modalities, settings)
    full = ceilings["+".join(modalities)]["action_top1"]
    lines = ["| modalities | verb | noun | action | action / full set |", "|---|---|---|---|---|"]
    for subset, c in sorted(ceilings.items(), key=lambda kv: (-len(kv[0]), kv[0])):
        lines.append(
            f"| {subset} | {c['verb_top1']:.1f} | {c['noun_top1']:.1f} | {c['action_top1']:.1f} | "
            f"{c['action_top1'] / full:.2f} |"
        )
    prior = prior_top1(settings)
    lines.append(f"| none (the prior) | {prior['verb']:.1f} | {prior['noun']:.1f} | {prior['action']:.1f} | |")
    return "\n".join(lines)
