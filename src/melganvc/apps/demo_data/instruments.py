"""Real-instrument music corpus: scores from music21's corpus played by FluidSynth with the
FluidR3 General-MIDI soundfont (sampled real instruments), one arrangement per domain.

Why rendered scores: real recordings of the same music in two arrangements are rare and rarely
licence-clean; rendering gives any amount of it, seeded and reproducible, and the *same* held-out
pieces in every arrangement, so a conversion can be compared with what the target arrangement
really sounds like (``evaluate --refs``). The pieces are four-part works (Bach chorales, and the
Haydn and Mozart string quartet movements); a piece is either a training piece of
one domain or a test piece of all domains, never both, so test music is unseen.

Arrangements (``ARRANGEMENTS``), by voice from the highest to the lowest part:

* ``piano``   -- acoustic grand piano on every part;
* ``strings`` -- violin, violin, viola, cello;
* ``brass``   -- trumpet, trumpet, French horn, trombone (tuba on the bass);
* ``jazz``    -- a combo: vibraphone lead, piano inner voices, upright bass, brush drums.

Each rendering draws a tempo (0.8-1.2 x), a dynamic (velocity 60-110, +-8 per note), a gain and
a reverb room; training pieces draw per domain, a test piece draws once for all domains.
Files: ``instruments/<domain>/{train,test}/<piece>_<k>.flac`` -- 44.1 kHz stereo, 8 s clips cut
from the rendering (nearly silent clips skipped), plus ``instruments/pieces.tsv``.
Needs ``fluidsynth`` and ``fluid-soundfont-gm`` (Debian) and the ``music`` extra (music21).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from tqdm import tqdm

from melganvc.errors import UserError
from melganvc.io.files import atomic_path, atomic_write_text

SAMPLE_RATE = 44100
CLIP_SECONDS = 8.0
MAX_CLIPS = 6  # per piece and rendering: a long quartet movement gives at most 48 s
SOUNDFONTS = (Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"),)
SPLITS = ("train", "test")


@dataclass(frozen=True)
class Voice:
    """One part's instrument: a General-MIDI program (0-127) and an octave shift."""

    program: int
    octave: int = 0


DRUMS = "drums"  # the jazz arrangement's extra brush-kit part (GM drum channel, kit 40)
ARRANGEMENTS: dict[str, tuple[Voice, ...]] = {
    # highest part first; the last entry plays the lowest part, middle entries cycle over the rest
    "piano": (Voice(0), Voice(0), Voice(0), Voice(0)),
    "strings": (Voice(40), Voice(40), Voice(41), Voice(42)),
    "brass": (Voice(56), Voice(56), Voice(60), Voice(57)),
    "jazz": (Voice(11), Voice(0), Voice(0), Voice(32, octave=-1)),
}
SWING_KIT = 40  # FluidR3 drum kit "Brush" (bank 128)


# ---------------------------------------------------------------- checks
def soundfont() -> Path | None:
    """The General-MIDI soundfont if installed (Debian ``fluid-soundfont-gm``)."""
    return next((p for p in SOUNDFONTS if p.is_file()), None)


def missing_tools() -> str | None:
    """Why the corpus cannot be rendered here (one line), or None when it can."""
    if shutil.which("fluidsynth") is None:
        return "fluidsynth is not installed (Debian: apt install fluidsynth fluid-soundfont-gm)"
    if soundfont() is None:
        return "the FluidR3 GM soundfont is missing (Debian: apt install fluid-soundfont-gm)"
    try:
        import music21  # noqa: F401
    except ImportError:
        return "music21 is not installed (pip install 'melganvc[music]')"
    return None


# ---------------------------------------------------------------- scores
@dataclass(frozen=True)
class Note:
    """A note in quarter notes from the start of the piece."""

    start: float
    length: float
    pitch: int


def piece_pool() -> list[str]:
    """Corpus paths of the four-part pieces, sorted (the split depends on nothing else)."""
    from music21 import corpus

    paths = [str(p) for p in corpus.getComposer("bach")]
    for composer in ("haydn", "mozart"):  # Beethoven's whole quartets take 30-40 s to parse
        paths += [str(p) for p in corpus.getComposer(composer)]
    return sorted(p for p in paths if p.endswith((".mxl", ".xml", ".krn")))


def piece_name(path: str) -> str:
    """A short stable name: composer and file stem (``bach-bwv66.6``)."""
    p = Path(path)
    return f"{p.parent.name}-{p.stem}".replace("_", "-")


def read_parts(path: str) -> list[list[Note]]:
    """The piece's parts, highest first (by mean pitch), ties merged; [] if not four-part-like."""
    from music21 import corpus

    score = corpus.parse(path)
    parts = []
    for part in score.parts:
        notes = [Note(float(n.offset), float(n.quarterLength), int(p.midi))
                 for n in part.stripTies().flatten().notes for p in n.pitches
                 if float(n.quarterLength) > 0]
        if notes:
            parts.append(notes)
    if not 3 <= len(parts) <= 8:
        return []
    return sorted(parts, key=lambda notes: -np.mean([n.pitch for n in notes]))


def _voices(arrangement: tuple[Voice, ...], n_parts: int) -> list[Voice]:
    """Voice per part (highest first): the first entry leads, the last plays the bass."""
    middle = arrangement[1:-1]
    return [arrangement[0]] + [middle[i % len(middle)] for i in range(n_parts - 2)] + [arrangement[-1]]


# ---------------------------------------------------------------- MIDI
def _vlq(value: int) -> bytes:
    """A MIDI variable-length quantity."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def midi_file(parts: Sequence[Sequence[Note]], voices: Sequence[Voice], bpm: float,
              rng: np.random.Generator, velocity: int, drums: bool) -> bytes:
    """A format-0 standard MIDI file: one channel per part, programs set, a tempo, per-note
    velocity jitter; with ``drums`` a brush-kit groove (ride, hi-hat on 2 and 4, soft kick)."""
    tpq = 480
    events: list[tuple[int, int, bytes]] = []  # (tick, order, message): note-offs sort first
    for channel, (notes, voice) in enumerate(zip(parts, voices)):
        channel += channel >= 9  # channel 10 (index 9) is the drum channel
        events.append((0, 0, bytes([0xC0 | channel, voice.program])))
        for note in notes:
            pitch = int(np.clip(note.pitch + 12 * voice.octave, 0, 127))
            vel = int(np.clip(velocity + rng.integers(-8, 9), 1, 127))
            on, off = round(note.start * tpq), round((note.start + note.length) * tpq)
            events.append((on, 2, bytes([0x90 | channel, pitch, vel])))
            events.append((max(on + 1, off - 1), 1, bytes([0x80 | channel, pitch, 0])))
    if drums:
        end = max(n.start + n.length for notes in parts for n in notes)
        events.append((0, 0, bytes([0xC9, SWING_KIT])))
        for beat in range(int(end)):
            hits = [(beat, 51, 70)] + ([(beat + 2 / 3, 51, 55), (beat, 44, 60)] if beat % 2 else
                                        [(beat, 36, 50)])
            for start, key, vel in hits:
                tick = round(start * tpq)
                vel = int(np.clip(vel * velocity / 85 + rng.integers(-6, 7), 1, 127))
                events.append((tick, 2, bytes([0x99, key, vel])))
                events.append((tick + tpq // 4, 1, bytes([0x89, key, 0])))
    events.sort(key=lambda e: (e[0], e[1]))
    track = bytearray(b"\x00\xff\x51\x03" + round(60e6 / bpm).to_bytes(3, "big"))
    last = 0
    for tick, _, message in events:
        track += _vlq(tick - last) + message
        last = tick
    track += b"\x00\xff\x2f\x00"
    header = b"MThd" + (6).to_bytes(4, "big") + (0).to_bytes(2, "big") + (1).to_bytes(2, "big")
    return header + tpq.to_bytes(2, "big") + b"MTrk" + len(track).to_bytes(4, "big") + bytes(track)


def render(midi: bytes, reverb: float, gain: float, seconds: float) -> np.ndarray:
    """FluidSynth's stereo rendering of ``midi`` at 44.1 kHz, ``(samples, 2)`` float32, cut to
    ``seconds`` (+ 2 s of release) so long pieces cost no more than they give."""
    font = soundfont()
    assert font is not None
    with tempfile.TemporaryDirectory(prefix="melganvc-render-") as tmp:
        mid, wav = Path(tmp) / "in.mid", Path(tmp) / "out.wav"
        mid.write_bytes(midi)
        command = ["fluidsynth", "-ni", "-q", "-F", str(wav), "-r", str(SAMPLE_RATE),
                   "-g", f"{gain:.3f}", "-o", "synth.reverb.active=1",
                   "-o", f"synth.reverb.room-size={reverb:.2f}",
                   "-o", f"synth.reverb.level={0.3 + 0.5 * reverb:.2f}",
                   "-o", "synth.chorus.active=0", str(font), str(mid)]
        done = subprocess.run(command, check=False, capture_output=True, text=True,
                              timeout=600)
        if done.returncode != 0 or not wav.is_file():
            raise RuntimeError(f"fluidsynth failed: {(done.stderr or done.stdout).strip()[:200]}")
        with sf.SoundFile(str(wav)) as f:
            return f.read(min(f.frames, int((seconds + 2) * SAMPLE_RATE)), dtype="float32",
                          always_2d=True)


@dataclass(frozen=True)
class Performance:
    """How one rendering is played: tempo factor, velocity, gain and reverb room size."""

    tempo: float
    velocity: int
    gain: float
    reverb: float

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Performance:
        return cls(float(rng.uniform(0.8, 1.2)), int(rng.integers(60, 111)),
                   float(rng.uniform(0.35, 0.6)), float(rng.uniform(0.1, 0.8)))


def perform(parts: list[list[Note]], arrangement: str, how: Performance,
            rng: np.random.Generator) -> np.ndarray:
    """One arrangement of the piece as 44.1 kHz stereo, at most ``MAX_CLIPS`` clips long."""
    voices = _voices(ARRANGEMENTS[arrangement], len(parts))
    bpm = 90.0 * how.tempo
    end = MAX_CLIPS * CLIP_SECONDS * bpm / 60  # quarters: no longer rendered than kept
    parts = [[n for n in notes if n.start < end] for notes in parts]
    midi = midi_file(parts, voices, bpm, rng, how.velocity,
                     drums=arrangement == "jazz")
    return render(midi, how.reverb, how.gain, MAX_CLIPS * CLIP_SECONDS)


def clips(audio: np.ndarray, silence_db: float = 30.0) -> list[tuple[int, np.ndarray]]:
    """Consecutive 8 s clips with their position, those whose RMS is ``silence_db`` under the
    loudest dropped (positions, not ranks, name the files: test clips pair up across domains)."""
    n = int(CLIP_SECONDS * SAMPLE_RATE)
    pieces = [audio[i: i + n] for i in range(0, len(audio) - n + 1, n)][:MAX_CLIPS]
    if not pieces:
        return []
    rms = np.array([np.sqrt(np.mean(p.astype(np.float64) ** 2)) for p in pieces])
    floor = rms.max() * 10 ** (-silence_db / 20)
    return [(k, p) for k, (p, r) in enumerate(zip(pieces, rms)) if r > 0 and r >= floor]


# ---------------------------------------------------------------- the corpus
def _seed(*keys: Any) -> np.random.Generator:
    """A generator seeded by a stable hash of ``keys`` (independent of Python's hash salt)."""
    digest = hashlib.sha256(repr(keys).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def split_pieces(pool: list[str], domains: Sequence[str], n_train: int, n_test: int,
                 seed: int) -> tuple[dict[str, list[str]], list[str]]:
    """Test pieces (shared by all domains) and each domain's own training pieces, disjoint from
    the test pieces and from the other domains' as far as the pool allows (unpaired data)."""
    order = list(pool)
    _seed("split", seed).shuffle(order)
    test, rest = order[:n_test], order[n_test:]
    if not rest:
        raise UserError(f"the score corpus has only {len(pool)} pieces; ask for fewer test pieces")
    train = {d: [rest[(k * n_train + i) % len(rest)] for i in range(n_train)]
             for k, d in enumerate(domains)}
    return train, test


def _write_clips(folder: Path, name: str, audio: np.ndarray) -> list[str]:
    """Write a rendering's clips as FLAC (atomic); return their names."""
    written = []
    for k, clip in clips(audio):
        path = folder / f"{name}_{k}.flac"
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            sf.write(str(tmp), clip, SAMPLE_RATE, subtype="PCM_16", format="FLAC")
        written.append(path.name)
    return written


def generate_instrument_corpus(out_dir: Path, domains: Sequence[str] = tuple(ARRANGEMENTS),
                               n_train: int = 40, n_test: int = 6, seed: int = 0,
                               progress: bool = True) -> dict[str, Any]:
    """Render the corpus under ``out_dir/instruments``; return a summary (also ``pieces.tsv``).

    ``n_train`` training pieces per domain (each gives up to six 8 s clips), ``n_test`` test
    pieces rendered in every domain with the same performance (parallel files, same names).
    Raises ``UserError`` when a tool is missing or a domain is unknown.
    """
    reason = missing_tools()
    if reason:
        raise UserError(reason)
    unknown = sorted(set(domains) - set(ARRANGEMENTS))
    if unknown:
        raise UserError(f"unknown instrument domain {unknown[0]!r}: instrument domains are "
                        f"{', '.join(ARRANGEMENTS)}")
    if n_train < 0 or n_test < 0:
        raise UserError(f"need --train >= 0 and --test >= 0 pieces (got {n_train}, {n_test})")
    root = Path(out_dir) / "instruments"
    train, test = split_pieces(piece_pool(), domains, n_train, n_test, seed)
    jobs: list[tuple[str, str, str | None]] = [(piece, "test", None) for piece in test]
    jobs += [(piece, "train", d) for d in domains for piece in train[d]]
    rows = ["piece\tsplit\tdomain\tclips\ttempo\tvelocity\treverb"]
    counts: dict[str, dict[str, int]] = {d: {"train": 0, "test": 0} for d in domains}
    for piece, split, domain in tqdm(jobs, desc="rendering", unit="piece", disable=not progress):
        parts = read_parts(piece)
        if not parts:
            continue
        how = Performance.draw(_seed("performance", seed, piece, domain))
        for d in domains if domain is None else [domain]:
            audio = perform(parts, d, how, _seed("notes", seed, piece, d))
            for old in (root / d / split).glob(f"{piece_name(piece)}_*.flac"):
                old.unlink()
            names = _write_clips(root / d / split, piece_name(piece), audio)
            counts[d][split] += len(names)
            rows.append(f"{piece_name(piece)}\t{split}\t{d}\t{len(names)}\t{how.tempo:.3f}\t"
                        f"{how.velocity}\t{how.reverb:.2f}")
    atomic_write_text(root / "pieces.tsv", "\n".join(rows) + "\n")
    return {"sample_rate": SAMPLE_RATE, "root": str(root), "domains": counts}
