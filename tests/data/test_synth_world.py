"""SynthKitchen's generative model: the ceilings are exact, shaped like EPIC-100's, and the renderer
shows each modality exactly the cues the ceilings assume."""

from collections import Counter, defaultdict

import numpy as np
import pytest

from karmma.data.synth import Action as SynthAction
from karmma.data.synth import SynthSize, render_audio, render_video
from karmma.data.synth_world import (
    NOUN_NAMES,
    VERB_NAMES,
    ActionLatent,
    Instance,
    cue,
    information_ceilings,
    instances,
    noun_label_distribution,
    pair_prior,
    prior_top1,
    sample_action,
    verb_label_distribution,
)

# KARMMA_S on EPIC-KITCHENS-100 (the paper's table): each subset's action top-1 over V+F+A's
EPIC_SHAPE = {"V": 0.92, "F": 0.67, "A": 0.18, "V+F": 0.96, "V+A": 0.96, "F+A": 0.72}


def test_ceilings_follow_epic_shape_and_leave_room():
    ceilings = information_ceilings()
    full = ceilings["V+F+A"]["action_top1"]
    assert 60 <= full <= 85  # not saturated: look-alikes, quiet actions and label noise remain
    for subset, ratio in EPIC_SHAPE.items():
        assert ceilings[subset]["action_top1"] / full == pytest.approx(ratio, abs=0.1), subset


def test_more_sensors_never_know_less():
    ceilings = information_ceilings()
    prior = prior_top1()
    for subset, c in ceilings.items():
        for other, d in ceilings.items():
            if set(other.split("+")) < set(subset.split("+")):
                for metric in c:
                    assert c[metric] >= d[metric] - 1e-9, (subset, other, metric)
        assert c["action_top1"] >= prior["action"] and c["verb_top1"] <= 100


def test_long_tail_of_plausible_pairs():
    prior = pair_prior()
    assert len(prior) >= 60 and sum(prior.values()) == pytest.approx(1)
    probabilities = sorted(prior.values(), reverse=True)
    assert probabilities[0] > 15 * probabilities[-1]  # Zipf-like: the head is far more frequent than the tail
    assert len(prior) < len(VERB_NAMES) * len(NOUN_NAMES)  # only some pairs occur


def test_sampling_matches_the_enumerated_model():
    """The Bayes-optimal rule from the enumeration, applied to sampled instances, scores the ceiling."""
    rng = np.random.default_rng(0)
    samples = [sample_action(rng) for _ in range(20_000)]
    # the rule: for each V+F+A cue, the action label with the largest enumerated probability
    posterior: dict = defaultdict(Counter)
    for instance, p in instances():
        seen = tuple(cue(m, instance) for m in "VFA")
        for lv, pv in verb_label_distribution(instance.verb).items():
            for ln, pn in noun_label_distribution(instance.noun).items():
                posterior[seen][(lv, ln)] += p * pv * pn
    hits = 0
    for s in samples:
        seen = tuple(cue(m, s.instance) for m in "VFA")
        hits += max(posterior[seen], key=posterior[seen].get) == (s.label_verb, s.label_noun)
    measured = 100 * hits / len(samples)
    ceiling = information_ceilings()["V+F+A"]["action_top1"]
    assert measured == pytest.approx(ceiling, abs=1.5)  # 20,000 draws: binomial sd about 0.3 points
    assert len({(s.verb, s.noun) for s in samples}) >= 60


def _latent(verb: str, noun: str, knock: bool = False, rattle: bool = False, masked: bool = False) -> ActionLatent:
    v, n = VERB_NAMES.index(verb), NOUN_NAMES.index(noun)
    return ActionLatent(Instance(v, n, knock, rattle, masked), v, n)


def _render(latent: ActionLatent, seed: int = 3):
    size = SynthSize(participants=1, validation_participants=0, videos_per_participant=1, actions_per_video=1)
    action = SynthAction(latent, 0.3, 1.9)
    frames = render_video(np.random.default_rng(seed), [action], 2.1, size)
    audio = render_audio(np.random.default_rng(seed), [action], 2.1)
    return frames, audio


def test_look_alike_nouns_are_pixel_identical_and_differ_only_in_a_knock():
    cup, glass = _render(_latent("take", "cup")), _render(_latent("take", "glass"))
    assert cue("V", _latent("take", "cup").instance) == cue("V", _latent("take", "glass").instance)
    np.testing.assert_array_equal(cup[0], glass[0])  # RGB cannot tell them
    np.testing.assert_array_equal(cup[1], glass[1])  # nor can a quiet action's audio
    cup_knock, glass_knock = _render(_latent("take", "cup", knock=True)), _render(_latent("take", "glass", knock=True))
    assert np.abs(cup_knock[1] - glass_knock[1]).max() > 0.05  # a knock tells ceramic from glass
    masked = [_render(_latent("take", noun, knock=True, masked=True))[1] for noun in ("cup", "glass")]
    np.testing.assert_array_equal(*masked)  # unless the room is louder


def test_verbs_rgb_cannot_tell_differ_in_motion_only():
    """adjust and shake: same look, same place and amplitude; only the speed differs (flow sees it)."""
    adjust, shake = _render(_latent("adjust", "bottle")), _render(_latent("shake", "bottle"))
    assert cue("V", _latent("adjust", "bottle").instance) == cue("V", _latent("shake", "bottle").instance)
    difference = np.abs(adjust[0].astype(int) - shake[0].astype(int))
    assert difference.max() > 0  # the object is elsewhere in some frames
    consecutive = [np.abs(np.diff(f.astype(int), axis=0)).mean() for f in (adjust[0], shake[0])]
    assert consecutive[1] > consecutive[0]  # frame to frame, shaking moves more


def test_the_documented_ceilings_are_the_generators():
    """docs/data.md's table is what `karmma synth --ceilings` prints (its first five columns)."""
    from pathlib import Path

    from karmma.data.synth_world import ceiling_table

    docs = (Path(__file__).resolve().parents[2] / "docs" / "data.md").read_text()
    for row in ceiling_table().splitlines()[2:]:
        assert row.rstrip(" |") in docs, row


def test_the_bayes_classifier_scores_the_ceilings_and_the_verb_alone_knows_less():
    """Scored against the annotated labels' distribution of every instance, the per-clip Bayes guess
    gives back each subset's ceiling exactly; the verb alone (flow without the object's outline) is
    below flow's ceiling on the noun and equal on the verb."""
    from karmma.data.synth_world import bayes_classifier, seen_by

    def expected_top1(seen) -> dict[str, float]:
        guess, top1 = bayes_classifier(seen), defaultdict(float)
        for instance, p in instances():
            g, verbs, nouns = (
                guess(instance),
                verb_label_distribution(instance.verb),
                noun_label_distribution(instance.noun),
            )
            top1["verb_top1"] += p * verbs.get(g["verb"], 0.0)
            top1["noun_top1"] += p * nouns.get(g["noun"], 0.0)
            top1["action_top1"] += p * verbs.get(g["action"][0], 0.0) * nouns.get(g["action"][1], 0.0)
        return {k: round(100 * v, 2) for k, v in top1.items()}

    for subset, ceiling in information_ceilings().items():
        assert expected_top1(seen_by(tuple(subset.split("+")))) == pytest.approx(ceiling, abs=0.011), subset
    verb_alone = expected_top1(lambda instance: (instance.verb,))
    flow = information_ceilings()["F"]
    assert verb_alone["verb_top1"] == pytest.approx(flow["verb_top1"], abs=0.011)
    assert verb_alone["noun_top1"] < flow["noun_top1"] - 10
