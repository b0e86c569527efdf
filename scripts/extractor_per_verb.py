"""Where a SynthKitchen model stands against its ceiling, verb by verb (docs/evaluation.md, "Session 17:
flow's noun stays at what the verb alone tells").

The information ceilings (docs/data.md) are the top-1 of the Bayes-optimal classifier that sees the
cues a modality renders. Scored on each test clip's latents (``SynthKitchen_latents.csv``, written by
``karmma synth``), that classifier is the ceiling clip by clip, so a model can be compared with it on
the clips of each true verb. Beside it, the Bayes guess from the verb alone: where a model's noun sits
at that level, it reads the motion and none of the object.

    python scripts/extractor_per_verb.py DEMO_SEED_FOLDER [RUN ...]

DEMO_SEED_FOLDER is one seed's pipeline: ``karmma-demo`` after ``karmma demo``, ``karmma-demo/seed_0``
after ``karmma demo --seeds 0,1,2``.

RUN are run names under the folder's runs/ (default: the six pre-trained extractors); each is scored
on the main recordings' test split, with every modality it has.
"""

import argparse
from collections import defaultdict
from pathlib import Path

from karmma.data.annotations import read_epic_segments
from karmma.data.synth import LATENTS_FILE, read_latents
from karmma.data.synth_world import VERB_NAMES, bayes_classifier, seen_by
from karmma.demo import UNIMODAL_RUN_PREFIXES, main_data
from karmma.evaluation.evaluate import EvaluationSettings, evaluate_with_scores, load_for_evaluation

COLUMNS = ("model verb", "ceiling verb", "model noun", "ceiling noun", "verb alone noun")


def per_verb(run: Path, main: Path, latents: dict, labels: dict) -> dict[str, list[float]]:
    """``{true verb: [clips, then the COLUMNS' top-1 (%)]}`` of ``run`` on the test clips, plus ``"all"``."""
    evaluated = load_for_evaluation(run, run.name, overrides=main_data(main))
    _, scores = evaluate_with_scores(
        evaluated, EvaluationSettings(split="test", probabilities=(0.0,), seeds=1, workers=2, progress=False)
    )
    ceiling = bayes_classifier(seen_by(tuple(evaluated.model.modalities)))
    verb_alone = bayes_classifier(lambda instance: (instance.verb,))
    verbs, nouns = (scores.probabilities[head].argmax(dim=1).tolist() for head in ("verb", "noun"))
    sums: dict[str, list[float]] = defaultdict(lambda: [0.0] * (1 + len(COLUMNS)))
    for clip, verb, noun in zip(scores.ids, verbs, nouns):
        instance, (label_verb, label_noun) = latents[clip], labels[clip]
        best, alone = ceiling(instance), verb_alone(instance)
        hits = (verb == label_verb, best["verb"] == label_verb, noun == label_noun, best["noun"] == label_noun)
        for key in (VERB_NAMES[instance.verb], "all"):
            row = sums[key]
            row[0] += 1
            for i, hit in enumerate((*hits, alone["noun"] == label_noun), start=1):
                row[i] += hit
    return {key: [row[0], *(100 * x / row[0] for x in row[1:])] for key, row in sums.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="one seed's demo folder: prepared/ and runs/ in it")
    parser.add_argument("runs", nargs="*", help="run names under runs/ (default: the pre-trained extractors)")
    args = parser.parse_args()
    main_set = args.folder / "prepared" / "main"
    latents_path = main_set / "annotations" / LATENTS_FILE
    if not latents_path.is_file():
        parser.error(
            f"{latents_path} not found: recordings made before the latents were written; run karmma synth again"
        )
    latents = read_latents(latents_path)
    test = read_epic_segments(main_set / "annotations" / "EPIC_100_test.csv", require_labels=True)
    labels = {segment.id: (segment.labels["verb"], segment.labels["noun"]) for segment in test}
    runs = args.runs or [prefix + m for prefix in UNIMODAL_RUN_PREFIXES.values() for m in ("V", "F", "A")]
    missing = [name for name in runs if not (args.folder / "runs" / name).is_dir()]
    if missing:
        parser.error(f"no run folder {', '.join(missing)} under {args.folder / 'runs'}")
    for name in runs:
        rows = per_verb(args.folder / "runs" / name, main_set, latents, labels)
        print(f"\n{name}: top-1 (%) on the test clips of each true verb")
        print(f"{'verb':8s} {'clips':>5s} " + " ".join(f"{c:>15s}" for c in COLUMNS))
        for key in [*VERB_NAMES, "all"]:
            if key in rows:
                clips, *values = rows[key]
                print(f"{key:8s} {int(clips):5d} " + " ".join(f"{v:15.1f}" for v in values))


if __name__ == "__main__":
    main()
