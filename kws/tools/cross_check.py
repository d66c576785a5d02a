"""The cross-check: how a model trained on espeak-ng voices hears voices it never heard.

``python -m kws cross-check --ckpt CKPT``  |  ``--tflite EXPORT/model_int8.tflite --runtime micro``

The clips (:mod:`kws.tools.cross_clips`): the keywords and other Speech Commands words spoken by
every English flite and festival voice at several rates and pitches, 1 s cuts of unheard
background noise, and real Speech Commands clips (``kws/assets/real_speech``). None is training
data. Each clip is scored three ways:

- ``fresh``: the clip alone, the front end from a fresh state (how a clip test sees it);
- ``board``: after ``--lead_in_s`` of quiet noise (the shipped recordings' test part at
  ``--noise_volume`` over a ``--floor_rms`` floor): the clip is unchanged, but the front end's
  noise estimate and PCAN gain come in from the noise, as on the board (the data module's
  evaluation clips are featurized alike, :mod:`datamodules.lead_in`). A stateless front end
  (mfcc) sees no difference;
- ``stream``: each voice's clips one after another, ``--gap_s`` apart over that quiet noise,
  through :func:`kws.deploy.listen.listen` (the model's calibrated recognizer, at its inference
  stride): a keyword is heard when its label is detected between its start and its end +
  ``--tolerance_ms`` (as the stream test counts); any other detection is a false alarm.

Per voice, per family (flite, festival, real, noise) and for all synthetic voices: the recall of
each keyword, the share of other-word and noise clips taken for a keyword (false positives; in
the stream, those followed by a false alarm before the next clip) and the balanced accuracy over
the classes present. Printed as a markdown table; ``<out>/results.json`` and ``<out>/clips.csv`` (every
clip's predictions) keep everything.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import zlib
from pathlib import Path

import numpy as np

from datamodules.noise_parts import noise_part
from datamodules.synthetic import DEFAULT_UNKNOWN_WORDS, real_noise_dir
from kws.audio.settings import FeatureSettings
from kws.audio.wav import read_wav
from kws.deploy.listen import MICRO_SPEECH_LABELS, export_of, listen
from kws.export.classifiers import ModelClassifier, pytorch_classifier, tflite_classifier
from kws.streams.frontend import StreamingFeatures
from kws.streams.recognize import (
    DEFAULT_RECOGNIZER,
    RecognizeCommands,
    RecognizerSettings,
    add_recognizer_flags,
    given_flags,
)
from kws.streams.recordings import StreamEvent
from kws.streams.scoring import keyword_events, match
from kws.tools.cross_check_report import metrics, table
from kws.tools.cross_clips import (
    DEFAULT_PITCHES,
    DEFAULT_STRETCHES,
    SYNTHESIZERS,
    CrossCheckError,
    clip_set,
    list_voices,
    real_clips,
    real_speech_dir,
    require,
)

FAMILIES = ("flite", "festival", "real", "noise")


def canonical(label: str) -> str:
    """silence / unknown whatever the model calls them (``_silence_``...); keywords as they are."""
    return label.strip("_") if label.strip("_") in ("silence", "unknown") else label


def true_label(row: dict, keywords: list[str]) -> str:
    return "silence" if row["family"] == "noise" else row["word"] if row["word"] in keywords else "unknown"


def quiet_noise(
    length: int, rng: np.random.Generator, parts: list[np.ndarray], volume: float, floor_rms: float
) -> np.ndarray:
    """[length] float64: one background part looped from a random point at ``volume``, plus a Gaussian floor."""
    part = parts[int(rng.integers(len(parts)))].astype(np.float64)
    return np.resize(np.roll(part, -int(rng.integers(len(part)))), length) * volume + rng.normal(0.0, floor_rms, length)


def to_int16(audio: np.ndarray) -> np.ndarray:
    return np.clip(np.round(audio), -32768, 32767).astype(np.int16)


def window_features(rows: np.ndarray, settings: FeatureSettings, desc: str) -> np.ndarray:
    """[n, frames * features]: each int16 row through a fresh stateful front end, its last window
    (the clip's, when a row is a lead-in of whole strides followed by the clip)."""
    from tqdm.auto import tqdm

    out = np.zeros((len(rows), settings.num_frames * settings.num_features), np.float32)
    for i, row in enumerate(tqdm(rows, desc=desc, unit="clip", leave=False)):
        frames = StreamingFeatures(settings).push(row)
        out[i] = frames[-settings.num_frames :].reshape(-1)
    return out


def board_rows(
    clips: np.ndarray,
    settings: FeatureSettings,
    parts: list[np.ndarray],
    lead_in_s: float,
    volume: float,
    floor_rms: float,
    seed: int,
) -> np.ndarray:
    """[n, lead + S] int16: a seeded lead-in of quiet noise, a whole number of strides long, then each clip as it is."""
    lead = int(round(lead_in_s * settings.sample_rate / settings.stride_samples)) * settings.stride_samples
    out = np.zeros((len(clips), lead + clips.shape[1]), np.int16)
    for i, clip in enumerate(clips):
        out[i, :lead] = to_int16(quiet_noise(lead, np.random.default_rng([seed, 11, i]), parts, volume, floor_rms))
        out[i, lead:] = clip
    return out


def stream_view(
    group: str,
    index: np.ndarray,
    clips: np.ndarray,
    rows: list[dict],
    truth: list[str],
    classifier,
    labels,
    settings,
    recognizer: RecognizerSettings,
    parts,
    args,
) -> tuple[dict[int, bool], dict[int, int]]:
    """({clip index: heard} of the group's keyword clips, {clip index: false alarms}): the group's
    clips in a seeded order, ``gap_s`` apart over quiet noise, through listen. A false alarm
    belongs to the clip whose start last preceded it (on its word or in the quiet after it)."""
    rng = np.random.default_rng([args.seed, 13, zlib.crc32(group.encode())])
    order = index[rng.permutation(len(index))]
    lead, step = int(args.lead_in_s * settings.sample_rate), clips.shape[1] + int(args.gap_s * settings.sample_rate)
    audio = quiet_noise(lead + len(order) * step, rng, parts, args.noise_volume, args.floor_rms)
    events, owners = [], []
    for j, i in enumerate(order):
        at = lead + j * step
        audio[at : at + clips.shape[1]] += clips[i]
        if truth[i] != "silence":
            events.append(
                StreamEvent(truth[i], rows[i]["word"], at + rows[i]["onset"], at + rows[i]["end"], rows[i]["path"])
            )
            owners.append(int(i))
    recognize = RecognizeCommands.from_settings(labels, recognizer)
    detections = listen(
        to_int16(audio), classifier, labels, settings, recognizer.inference_stride_ms, recognize, log=None
    )
    keywords = keyword_events(events)
    owner = {(e.start, e.label): i for e, i in zip(events, owners)}
    hit, _, false_alarms = match(
        [(d.label, d.score, d.time_ms) for d in detections], keywords, settings.sample_rate, args.tolerance_ms
    )
    alarms: dict[int, int] = {}
    for _, time_ms in false_alarms:
        j = (time_ms * settings.sample_rate // 1000 - lead) // step
        if j >= 0:  # one in the lead-in belongs to no clip
            alarms[int(order[min(j, len(order) - 1)])] = alarms.get(int(order[min(j, len(order) - 1)]), 0) + 1
    return {owner[(e.start, e.label)]: bool(h) for e, h in zip(keywords, hit)}, alarms


def load_model(args, parser) -> tuple[ModelClassifier, list[str], FeatureSettings, RecognizerSettings | None, str]:
    """(classifier, labels, features, calibrated recognizer or None, name) from --ckpt / --tflite."""
    if not args.ckpt and not args.tflite:
        parser.error("pass --ckpt (a checkpoint from `python -m kws fit`) or --tflite (an export's model_int8.tflite)")
    if not args.tflite:
        classifier, labels, settings = pytorch_classifier(args.ckpt)
        kept = classifier.recognizer
        calibrated = kept and RecognizerSettings.from_dict(kept, f"{args.ckpt} (kws_recognizer)")
        return classifier, labels, settings, calibrated, "float (PyTorch)"
    export = export_of(args.tflite)
    labels, settings, recognizer = MICRO_SPEECH_LABELS, FeatureSettings(), None
    if export:
        labels, settings, recognizer = export.labels, export.features, export.recognizer
    if args.ckpt:
        _, labels, settings = pytorch_classifier(args.ckpt)
    classifier = tflite_classifier(args.tflite, args.runtime)
    return (
        classifier,
        list(labels),
        settings,
        recognizer,
        f"int8 ({'tflite-micro' if args.runtime == 'micro' else 'LiteRT'})",
    )


def collect(args, keywords: list[str]) -> tuple[list[dict], list[Path]]:
    """Manifest rows of every clip and the folder each lies in."""
    synthesizers = [] if args.synthesizers == ["none"] else args.synthesizers
    unknown = sorted(set(synthesizers) - set(SYNTHESIZERS))
    if unknown:
        raise CrossCheckError(f"--synthesizers: unknown {unknown}; choose from {list(SYNTHESIZERS)} or none")
    voices = list_voices(synthesizers)
    if args.voices:
        missing = sorted(set(args.voices) - {v.id for v in voices})
        if missing:
            raise CrossCheckError(f"--voices: no voice {missing}; available: {[v.id for v in voices]}")
        voices = [v for v in voices if v.id in args.voices]
    folder, rows = clip_set(
        args.clips_dir,
        voices,
        keywords,
        [w for w in args.words if w not in keywords],
        args.stretches,
        args.pitches,
        args.seed,
    )
    rows, folders = list(rows), [folder] * len(rows)
    for real in [] if args.real_dir == ["none"] else args.real_dir or [str(real_speech_dir())]:
        found = real_clips(real)
        rows += found
        folders += [Path(real)] * len(found)
    return rows, folders


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m kws cross-check", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--ckpt",
        help="a checkpoint from `python -m kws fit`: the float model (and, with --tflite, its labels and features)",
    )
    parser.add_argument(
        "--tflite", help="score this int8 .tflite instead (labels and features from --ckpt, else report.json beside it)"
    )
    parser.add_argument(
        "--runtime",
        choices=("litert", "micro"),
        default="micro",
        help="the .tflite's runtime (micro: tflite-micro, as the board)",
    )
    parser.add_argument(
        "--synthesizers", nargs="+", default=list(SYNTHESIZERS), help="held-out synthesizers (flite, festival), or none"
    )
    parser.add_argument(
        "--voices",
        nargs="+",
        help="only these voices, e.g. flite/slt festival/kal_diphone (default: every English voice)",
    )
    parser.add_argument(
        "--words",
        nargs="+",
        default=list(DEFAULT_UNKNOWN_WORDS),
        help="the other words spoken besides the model's keywords",
    )
    parser.add_argument(
        "--stretches",
        type=float,
        nargs="+",
        default=list(DEFAULT_STRETCHES),
        help="speaking durations, x the voice's own",
    )
    parser.add_argument(
        "--pitches",
        type=int,
        nargs="+",
        default=list(DEFAULT_PITCHES),
        help="mean F0 (Hz) of the keywords, 0: the voice's own",
    )
    parser.add_argument(
        "--real_dir", nargs="+", help="folders of real <word>/*.wav clips (default: kws/assets/real_speech), or none"
    )
    parser.add_argument(
        "--clips_dir", default="data/cross_check", help="where the synthesized clips are cached (a folder per set)"
    )
    parser.add_argument("--out", default="runs/cross_check", help="results.json and clips.csv go here")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--lead_in_s",
        type=float,
        default=2.0,
        help="quiet noise before each clip in the board view (and before each stream)",
    )
    parser.add_argument(
        "--noise_volume", type=float, default=0.01, help="the background recordings' level in that quiet noise"
    )
    parser.add_argument("--floor_rms", type=float, default=2.0, help="its Gaussian floor, int16 units (a microphone's)")
    parser.add_argument("--gap_s", type=float, default=1.5, help="quiet between clips in the stream view")
    parser.add_argument(
        "--tolerance_ms", type=int, default=1000, help="a keyword is heard when detected before its end + this"
    )
    add_recognizer_flags(parser, ("detection_threshold", "average_window_ms", "inference_stride_ms"))
    args = parser.parse_args(argv)
    if args.lead_in_s < 0 or args.gap_s < 0 or args.noise_volume < 0 or args.floor_rms < 0:
        parser.error("--lead_in_s, --gap_s, --noise_volume and --floor_rms must be >= 0")
    from kws.export import ExportError

    try:
        for synthesizer in set(args.synthesizers) & set(SYNTHESIZERS):
            require(synthesizer)  # before the model: a missing tool is the first thing to hear about
        classifier, labels, settings, calibrated, name = load_model(args, parser)
        if settings.sample_rate != 16000:
            raise CrossCheckError(
                f"the model takes {settings.sample_rate} Hz audio; the cross-check's clips are 16 kHz"
            )
        keywords = [label for label in labels if canonical(label) not in ("silence", "unknown")]
        recognizer = dataclasses.replace(calibrated or DEFAULT_RECOGNIZER, **given_flags(args))
        rows, folders = collect(args, keywords)
        clips = np.stack(
            [read_wav(f / r["path"], settings.sample_rate)[0][: settings.clip_samples] for r, f in zip(rows, folders)]
        )
        parts = [
            noise_part(read_wav(p, settings.sample_rate)[0], "testing") for p in sorted(real_noise_dir().glob("*.wav"))
        ]
        return run(args, classifier, labels, settings, recognizer, name, rows, folders, clips, parts, keywords)
    except (
        CrossCheckError,
        ExportError,
        ValueError,
        OSError,
    ) as err:  # ValueError: also the checkpoint's and the audio's errors
        parser.exit(2, f"error: {err}\n")


def run(args, classifier, labels, settings, recognizer, name, rows, folders, clips, parts, keywords) -> dict:
    from tqdm.auto import tqdm

    truth = [true_label(r, keywords) for r in rows]
    predicted, probabilities = {}, {}
    fresh = window_features(clips, settings, "Features (fresh)")
    board = window_features(
        board_rows(clips, settings, parts, args.lead_in_s, args.noise_volume, args.floor_rms, args.seed),
        settings,
        "Features (board)",
    )
    for view, x in (("fresh", fresh), ("board", board)):
        probabilities[view] = np.concatenate([classifier(x[i : i + 512]) for i in range(0, len(x), 512)])
        predicted[view] = [canonical(labels[k]) for k in probabilities[view].argmax(1)]
    voices = sorted(
        {r["voice"] for r in rows},
        key=lambda v: (FAMILIES.index(v.split("/")[0]) if v.split("/")[0] in FAMILIES else 9, v),
    )
    heard, alarms = {}, {}
    for voice in tqdm(voices, desc="Streams (listen)", unit="voice", leave=False):
        index = np.array([i for i, r in enumerate(rows) if r["voice"] == voice])
        found, alarmed = stream_view(
            voice, index, clips, rows, truth, classifier, labels, settings, recognizer, parts, args
        )
        heard.update(found)
        alarms.update(alarmed)
    groups = {}
    for family in (*FAMILIES, "synthetic (flite + festival)"):
        members = [
            v
            for v in voices
            if v.split("/")[0] == family
            or (family.startswith("synthetic") and v.split("/")[0] in ("flite", "festival"))
        ]
        if not members:
            continue
        for voice in members if not family.startswith("synthetic") else []:
            groups[voice] = metrics(
                np.array([i for i, r in enumerate(rows) if r["voice"] == voice]),
                truth,
                predicted,
                heard,
                alarms,
                keywords,
            )
        index = np.array([i for i, r in enumerate(rows) if r["voice"] in members])
        groups[family] = metrics(index, truth, predicted, heard, alarms, keywords)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "clips.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            [
                "clip",
                "voice",
                "label",
                "pred_fresh",
                "p_label_fresh",
                "pred_board",
                "p_label_board",
                "heard_in_stream",
                "false_alarms_in_stream",
            ]
        )
        for i, (r, folder) in enumerate(zip(rows, folders)):
            k = (
                [canonical(label) for label in labels].index(truth[i])
                if truth[i] in [canonical(label) for label in labels]
                else None
            )
            p = [f"{probabilities[v][i, k]:.3f}" if k is not None else "" for v in ("fresh", "board")]
            writer.writerow(
                [
                    str(folder / r["path"]),
                    r["voice"],
                    truth[i],
                    predicted["fresh"][i],
                    p[0],
                    predicted["board"][i],
                    p[1],
                    heard.get(i, ""),
                    alarms.get(i, 0),
                ]
            )
    text = table(groups, keywords, name)
    results = dict(
        model=name,
        source=args.tflite or args.ckpt,
        labels=list(labels),
        keywords=keywords,
        recognizer=recognizer.to_dict(),
        views={
            "fresh": "each clip from a fresh front-end state",
            "board": f"each clip after {args.lead_in_s:g} s of quiet noise",
            "stream": f"each voice's clips {args.gap_s:g} s apart through listen",
        },
        options={k: v for k, v in vars(args).items() if k not in ("ckpt", "tflite")},
        groups=groups,
        table=text,
    )
    (out / "results.json").write_text(json.dumps(results, indent=1, default=float))
    print(text)
    shown = {k: v for k, v in recognizer.to_dict().items() if k != "ignore"}
    print(
        f"recognizer: {', '.join(f'{k} {v:g}' for k, v in shown.items())}; {len(rows)} clips; "
        f"results: {out}/results.json, {out}/clips.csv"
    )
    return results
