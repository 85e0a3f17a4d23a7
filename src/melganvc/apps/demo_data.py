"""Offline demo corpora: two synthetic speakers (espeak-ng) and two synthetic instruments (numpy).

Voice: speaker A is a low male espeak-ng voice, speaker B a high female one; every utterance is a
different seeded template sentence, and the four sets (A/B x train/test) are disjoint by
construction (a salted hash of the text picks the only set a sentence may go to), so the domains
are unpaired and the test sets do not change with ``n_train``.

espeak-ng is a C library with process-global state that its API cannot fully reset, so each
``generate_voice_demo`` call runs it in its own short-lived worker process (``EspeakProcess``):
the caller's process never loads it, it is initialised exactly once per worker, concurrent or
repeated calls cannot disturb each other, and the same arguments give the same samples.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np
import soxr
from tqdm import tqdm

from melganvc.errors import UserError
from melganvc.io.audio import save
from melganvc.io.files import atomic_write_text

INSTALL_HINT = "pip install 'melganvc[demo]' (or: pip install 'espeakng-loader>=0.2.4,<0.3')"
MIN_SECONDS, MAX_SECONDS = 1.5, 4.0
SPLITS = ("train", "test")


@dataclass(frozen=True)
class Speaker:
    """An espeak-ng voice: variant name, pitch (0-100), pitch range (0-100)."""

    voice: str
    pitch: int
    pitch_range: int


SPEAKERS = {"A": Speaker("en-us+m3", 35, 40), "B": Speaker("en-us+f3", 70, 55)}

# ---------------------------------------------------------------- sentences
ADJ = ("quick", "brown", "lazy", "small", "big", "old", "young", "red", "green", "blue", "bright",
       "dark", "quiet", "loud", "warm", "cold", "soft", "heavy", "light", "happy", "tired", "busy",
       "clever", "gentle", "tall", "short", "round", "empty", "clean", "wild")
NOUN = ("fox", "dog", "cat", "bird", "horse", "teacher", "doctor", "farmer", "child", "baker",
        "driver", "sailor", "painter", "girl", "boy", "friend", "neighbour", "king", "queen",
        "captain", "student", "pilot", "singer", "writer")
THING = ("box", "book", "letter", "apple", "basket", "chair", "table", "lamp", "window", "door",
         "coat", "hat", "cup", "bottle", "key", "map", "bell", "ball", "boat", "kite", "clock",
         "bag", "ticket", "garden", "picture")
PLACE = ("river", "market", "station", "kitchen", "garden", "library", "village", "forest",
         "harbour", "school", "bridge", "mountain", "office", "beach", "park", "hill", "valley",
         "road")
VERB = ("found", "carried", "painted", "opened", "closed", "pushed", "pulled", "washed", "dropped",
        "bought", "sold", "moved", "cleaned", "fixed", "watched", "followed")
ADV = ("slowly", "quickly", "quietly", "carefully", "happily", "suddenly", "gently", "loudly",
       "early", "later")
TIME = ("this morning", "last night", "on monday", "after lunch", "before dinner", "in the spring",
        "at noon", "every day", "next week", "on friday", "in the evening", "at dawn")
NAME = ("anna", "peter", "maria", "john", "lucy", "tom", "sarah", "david", "emma", "paul", "kate",
        "mark", "alice", "james", "helen", "george")
NUM = ("two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
PREP = ("near", "behind", "beside", "under", "above", "inside", "across")
TEMPLATES = (
    "the {adj} {noun} {verb} the {adj} {thing} {prep} the {place}",
    "{name} {verb} a {adj} {thing} {time}",
    "a {adj} {noun} walked {adv} to the {place} {time}",
    "did the {noun} see the {adj} {thing} {prep} the {place}?",
    "please put the {thing} {prep} the {adj} {thing}",
    "{name} and {name} {verb} {num} {adj} {things}",
    "we {verb} the {thing} {adv} because the {noun} was {adj}",
    "the {noun} from the {place} has a {adj} {thing}",
    "{name} said the {place} is {adj} {time}",
    "my {adj} {noun} {verb} {num} {things} near the {place}",
    "where did {name} leave the {adj} {thing}?",
    "the {thing} was {adj} and the {place} was {adj}",
)


class _RandomWords(dict):
    """``str.format_map`` source that draws a fresh word for every placeholder occurrence."""

    def __init__(self, rng: np.random.Generator) -> None:
        super().__init__()
        self.rng = rng

    def __missing__(self, key: str) -> str:
        words = WORDS[key]
        return words[int(self.rng.integers(len(words)))]


WORDS = {"adj": ADJ, "noun": NOUN, "thing": THING, "place": PLACE, "verb": VERB, "adv": ADV,
         "time": TIME, "name": NAME, "num": NUM, "prep": PREP,
         "things": [t + ("es" if t.endswith(("x", "s", "ch")) else "s") for t in THING]}


def _sentence(rng: np.random.Generator) -> str:
    """One random template sentence (plain lower-case English, 7-11 words)."""
    return TEMPLATES[rng.integers(len(TEMPLATES))].format_map(_RandomWords(rng))


def _bucket(text: str, seed: int) -> int:
    """Which of the four sets (A train, A test, B train, B test) ``text`` may belong to."""
    digest = hashlib.blake2b(f"{seed}:{text}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little") % 4


def sentence_stream(domain: str, split: str, seed: int) -> Iterator[str]:
    """Endless seeded stream of distinct sentences that belong only to (domain, split)."""
    index = 2 * "AB".index(domain) + SPLITS.index(split)
    rng = np.random.default_rng([seed, index])
    seen: set[str] = set()
    while True:
        text = _sentence(rng)
        if text not in seen and _bucket(text, seed) == index:
            seen.add(text)
            yield text


# ---------------------------------------------------------------- espeak-ng through ctypes
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                             ctypes.c_void_p)


class _Espeak:
    """The worker process's one initialised espeak-ng (synchronous mode: audio per call)."""

    def __init__(self, library_path: str, data_path: str, seed: int) -> None:
        lib = ctypes.CDLL(library_path)  # OSError if it cannot load
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        # 2 = AUDIO_OUTPUT_SYNCHRONOUS; 0x8000 = INITIALIZE_DONT_EXIT (an error code, not exit())
        self.sample_rate = lib.espeak_Initialize(2, 0, data_path.encode(), 0x8000)
        if self.sample_rate <= 0:
            raise RuntimeError(f"espeak-ng failed to initialise with data at {data_path}")
        # breath noise (the female variants) uses libc rand(), seeded from the clock at init
        ctypes.CDLL(None).srand(ctypes.c_uint(seed))
        if hasattr(lib, "espeak_ng_SetRandSeed"):  # espeak-ng's own generator (>= 1.51)
            lib.espeak_ng_SetRandSeed(ctypes.c_long(seed))
        self._chunks: list[np.ndarray] = []
        self._callback = _CALLBACK(self._collect)  # kept referenced: C holds a raw pointer
        lib.espeak_SetSynthCallback(self._callback)
        self._lib = lib

    def _collect(self, wav, n_samples: int, _events) -> int:
        if n_samples > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n_samples,)).copy())
        return 0  # 0 = keep synthesising

    def synthesize(self, text: str, voice: str, rate: int, pitch: int, pitch_range: int) -> bytes:
        """Speak ``text``; int16 little-endian mono at ``self.sample_rate``."""
        lib = self._lib
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise RuntimeError(f"espeak-ng has no voice '{voice}'")
        # espeakRATE=1, VOLUME=2, PITCH=3, RANGE=4, PUNCTUATION=5, CAPITALS=6, WORDGAP=7
        for parameter, value in ((1, rate), (2, 100), (3, pitch), (4, pitch_range),
                                 (5, 0), (6, 0), (7, 0)):
            lib.espeak_SetParameter(parameter, value, 0)
        self._chunks = []
        data = text.encode("utf-8")
        # POS_CHARACTER=1, espeakCHARS_UTF8=1
        if lib.espeak_Synth(data, len(data) + 1, 0, 1, 0, 1, None, None) != 0:
            raise RuntimeError(f"espeak-ng could not synthesise {text!r}")
        lib.espeak_Synchronize()
        chunks, self._chunks = self._chunks, []
        return b"".join(chunk.astype("<i2").tobytes() for chunk in chunks)


def _serve(library_path: str, data_path: str, seed: str) -> None:
    """Worker main: a JSON request per stdin line -> ``ok <n>\\n`` + n bytes, or ``error <why>``."""
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything the C library prints goes to stderr, never into the reply stream
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's; it closes our stdin

    def reply(status: str, payload: bytes = b"") -> None:
        replies.write(status.replace("\n", " ").encode() + b"\n" + payload)
        replies.flush()

    try:
        engine = _Espeak(library_path, data_path, int(seed))
    except (OSError, RuntimeError) as exc:
        return reply(f"error {exc}")
    reply(f"ok {engine.sample_rate}")
    for line in sys.stdin.buffer:
        request = json.loads(line)
        try:
            pcm = engine.synthesize(**request)
        except RuntimeError as exc:
            reply(f"error {exc}")
            continue
        reply(f"ok {len(pcm)}", pcm)


class EspeakProcess:
    """espeak-ng in a child process, one per ``generate_voice_demo`` call (a context manager).

    Why a process: espeak-ng keeps process-global C state that its API cannot reset - not only
    the voice and parameters but the pitch-flutter phase, the gain control and the noise
    generator, which run on from one utterance to the next (re-initialising resets none of them
    and is not supported). So in one process the same text comes out slightly differently each
    time. A fresh worker per call initialises espeak-ng exactly once, never touches the caller's
    process, and (with the C noise generators seeded) makes every call with the same arguments
    write the same samples.
    """

    def __init__(self, seed: int = 0) -> None:
        try:
            import espeakng_loader
            library, data = espeakng_loader.get_library_path(), espeakng_loader.get_data_path()
        except (ImportError, RuntimeError) as exc:
            raise UserError(f"demo voices need espeakng-loader ({exc}); "
                            f"install it: {INSTALL_HINT}") from None
        if not Path(library).is_file():
            raise UserError(f"espeakng-loader has no library at {library}; "
                            f"reinstall it: {INSTALL_HINT}")
        env = dict(os.environ)  # let the child import this very copy of melganvc
        package_root = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        self._process = subprocess.Popen([sys.executable, "-c", _WORKER, library, data, str(seed)],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        self.sample_rate = int(self._read_status("did not start"))

    def _read_status(self, failure: str) -> str:
        assert self._process.stdout is not None  # opened with stdout=PIPE
        status, _, payload = self._process.stdout.readline().decode().rstrip("\n").partition(" ")
        if status != "ok":
            self.close()
            reason = payload or f"worker exited with code {self._process.returncode}"
            raise UserError(f"espeak-ng (from espeakng-loader) {failure}: {reason}; "
                            f"reinstall it: {INSTALL_HINT}")
        return payload

    def synthesize(self, text: str, speaker: Speaker, rate: int, pitch: int) -> np.ndarray:
        """Speak ``text`` in ``speaker``'s voice; float32 mono at ``self.sample_rate``."""
        request = {"text": text, "voice": speaker.voice, "rate": rate, "pitch": pitch,
                   "pitch_range": speaker.pitch_range}
        assert self._process.stdin is not None and self._process.stdout is not None  # PIPEs
        self._process.stdin.write(json.dumps(request).encode() + b"\n")
        self._process.stdin.flush()
        n_bytes = int(self._read_status(f"failed on {text!r}"))
        pcm = self._process.stdout.read(n_bytes)
        if len(pcm) != n_bytes:
            self.close()
            raise UserError(f"espeak-ng worker died while speaking {text!r}; "
                            f"reinstall it: {INSTALL_HINT}")
        return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768

    def close(self) -> None:
        if self._process.stdin and not self._process.stdin.closed:
            self._process.stdin.close()  # EOF ends the worker's loop
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


_WORKER = "import sys; from melganvc.apps.demo_data import _serve; _serve(*sys.argv[1:4])"


# ---------------------------------------------------------------- waveform clean-up
def trim_and_normalize(wave: np.ndarray, sample_rate: int, top_db: float = 40.0,
                       pad_seconds: float = 0.05, rms_db: float = -20.0) -> np.ndarray:
    """Cut edge silence (10 ms frames under peak - ``top_db``), then set the RMS, cap the peak."""
    frame = max(1, sample_rate // 100)
    n_frames = len(wave) // frame
    if n_frames == 0:
        return wave.astype(np.float32)
    energy = np.sqrt(np.mean(wave[: n_frames * frame].reshape(n_frames, frame) ** 2, axis=1))
    active = np.flatnonzero(energy > energy.max() * 10 ** (-top_db / 20))
    pad = int(pad_seconds * sample_rate)
    start = max(0, active[0] * frame - pad)
    stop = min(len(wave), (active[-1] + 1) * frame + pad)
    wave = wave[start:stop].astype(np.float64)
    wave *= 10 ** (rms_db / 20) / max(np.sqrt(np.mean(wave**2)), 1e-9)
    wave *= min(1.0, 0.95 / max(np.abs(wave).max(), 1e-9))
    return wave.astype(np.float32)


def _clear_old(folder: Path, prefix: str) -> None:
    """Remove files a previous run wrote with our naming, so a smaller rerun leaves no extras."""
    for old in folder.glob(f"{prefix}_*.wav"):
        old.unlink()


def _check_counts(n_train: int, n_test: int, sample_rate: int) -> None:
    if n_train < 1 or n_test < 0 or sample_rate < 8000:
        raise UserError(f"need n_train >= 1, n_test >= 0, sample_rate >= 8000 "
                        f"(got {n_train}, {n_test}, {sample_rate})")


# ---------------------------------------------------------------- voice demo
def generate_voice_demo(out_dir: Path, n_train: int = 120, n_test: int = 10, seed: int = 0,
                        sample_rate: int = 16000, progress: bool = True) -> dict:
    """Write two unpaired synthetic speakers under ``out_dir/voice``; return a summary dict.

    Layout: ``voice/{A,B}/{train,test}/{A,B}_{split}_NNNN.wav`` (mono, ``sample_rate``, 1.5-4 s)
    and ``voice/{A,B}/transcripts.tsv`` (header ``file<TAB>text``, paths relative to the speaker
    folder). Sentences never repeat across speakers or splits. Deterministic for a given ``seed``.
    Raises ``UserError`` if espeakng-loader is missing or broken.
    """
    _check_counts(n_train, n_test, sample_rate)
    with EspeakProcess(seed) as engine:
        root = Path(out_dir) / "voice"
        summary: dict = {"sample_rate": sample_rate, "root": str(root), "domains": {}}
        counts = {"train": n_train, "test": n_test}
        with tqdm(total=2 * (n_train + n_test), desc="demo voices", unit="utt",
                  disable=not progress) as bar:
            for domain, speaker in SPEAKERS.items():
                summary["domains"][domain] = _voice_domain(engine, root / domain, domain, speaker,
                                                           counts, seed, sample_rate, bar)
    return summary


def _voice_domain(engine: EspeakProcess, folder: Path, domain: str, speaker: Speaker,
                  counts: dict[str, int], seed: int, sample_rate: int, bar: tqdm) -> dict:
    rng = np.random.default_rng([seed, 100 + "AB".index(domain)])
    rows = ["file\ttext"]
    info: dict[str, Any] = {"voice": speaker.voice, "rejected": 0}
    for split in SPLITS:
        _clear_old(folder / split, f"{domain}_{split}")
        seconds, written = 0.0, 0
        for text in sentence_stream(domain, split, seed):
            if written == counts[split]:
                break
            rate, pitch = int(rng.integers(150, 181)), speaker.pitch + int(rng.integers(-4, 5))
            raw = engine.synthesize(text, speaker, rate, pitch)
            wave = soxr.resample(raw, engine.sample_rate, sample_rate, quality="HQ")
            wave = trim_and_normalize(wave, sample_rate)
            duration = len(wave) / sample_rate
            if not MIN_SECONDS <= duration <= MAX_SECONDS:
                info["rejected"] += 1
                if info["rejected"] > 100 + 10 * sum(counts.values()):
                    raise RuntimeError(f"espeak-ng output for {domain} keeps missing "
                                       f"{MIN_SECONDS}-{MAX_SECONDS} s (last: {duration:.2f} s)")
                continue
            name = f"{split}/{domain}_{split}_{written:04d}.wav"
            save(folder / name, wave, sample_rate)
            rows.append(f"{name}\t{text}")
            seconds, written = seconds + duration, written + 1
            bar.update(1)
        info[split], info[f"{split}_seconds"] = written, round(seconds, 2)
    atomic_write_text(folder / "transcripts.tsv", "\n".join(rows) + "\n")
    return info


# ---------------------------------------------------------------- music demo (numpy additive)
SCALES = ((0, 2, 4, 5, 7, 9, 11), (0, 2, 3, 5, 7, 8, 10), (0, 2, 3, 5, 7, 9, 10),
          (0, 2, 4, 7, 9), (0, 2, 3, 5, 7, 8, 11))  # major, minor, dorian, pentatonic, harm. minor
TIMBRES = {"A": "piano", "B": "clarinet"}


def melody(rng: np.random.Generator, min_seconds: float = 4.0,
           max_seconds: float = 7.6) -> list[tuple[int, float]]:
    """A seeded phrase of (MIDI note, seconds): scale steps, leaps and arpeggios.

    Notes last ``min_seconds``-``max_seconds``; with the release tail the clip stays under 8 s.
    """
    scale = SCALES[rng.integers(len(SCALES))]
    root, beat = int(rng.integers(55, 68)), 60.0 / rng.uniform(80, 140)
    target, degree = rng.uniform(min_seconds, max_seconds), int(rng.integers(0, 5))
    notes: list[tuple[int, float]] = []
    while sum(seconds for _, seconds in notes) < target:
        if rng.random() < 0.2:  # arpeggio of eighth notes on the current degree
            figure = [(degree + step, 0.5 * beat) for step in (0, 2, 4, 7)[: rng.integers(3, 5)]]
        else:
            degree = int(np.clip(degree + rng.choice([-3, -2, -1, -1, 1, 1, 2, 3]), -2, 9))
            figure = [(degree, rng.choice([0.5, 1.0, 1.0, 1.5, 2.0]) * beat)]
        for step, seconds in figure:
            octave, index = divmod(step, len(scale))
            notes.append((root + 12 * octave + scale[index], float(seconds)))
    overshoot = sum(seconds for _, seconds in notes) - target
    notes[-1] = (notes[-1][0], max(0.15, notes[-1][1] - overshoot))
    return notes


def render_note(timbre: str, midi: int, seconds: float, sample_rate: int) -> np.ndarray:
    """One note, ``seconds`` long plus a short release tail; float32 mono, unnormalised.

    piano: all harmonics, slightly stretched (string stiffness), decaying - higher ones faster.
    clarinet: odd harmonics only (closed pipe), sustained, with a gentle 5 Hz vibrato.
    """
    f0 = 440.0 * 2 ** ((midi - 69) / 12)
    release = 0.08
    t = np.arange(int((seconds + release) * sample_rate)) / sample_rate
    wave = np.zeros_like(t)
    if timbre == "piano":
        for k in range(1, 30):
            fk = k * f0 * np.sqrt(1 + 3e-4 * k * k)
            if fk > 0.45 * sample_rate:
                break
            ring = t[: int(9.2 / (1.0 + 0.7 * k) * sample_rate)]  # until it has decayed by 80 dB
            wave[: len(ring)] += (k**-0.9 * np.exp(-ring * (1.0 + 0.7 * k))
                                  * np.sin(2 * np.pi * fk * ring))
        envelope = np.minimum(t / 0.004, 1.0) * np.exp(-np.maximum(t - seconds, 0.0) / 0.025)
    else:
        phase = 2 * np.pi * f0 * np.cumsum(1 + 0.004 * np.sin(2 * np.pi * 5.0 * t)) / sample_rate
        for k in range(1, 30, 2):
            if k * f0 > 0.45 * sample_rate:
                break
            wave += k**-1.6 * np.sin(k * phase)
        envelope = np.clip(np.minimum(t / 0.04, (seconds + release - t) / release), 0.0, 1.0)
    return (wave * envelope).astype(np.float32)


def render_melody(notes: list[tuple[int, float]], timbre: str, sample_rate: int) -> np.ndarray:
    """Overlap-add the notes of a phrase (each note's release rings into the next)."""
    total = sum(seconds for _, seconds in notes)
    out = np.zeros(int((total + 0.1) * sample_rate), np.float32)
    onset = 0.0
    for midi, seconds in notes:
        note = render_note(timbre, midi, seconds, sample_rate)
        start = int(onset * sample_rate)
        out[start:start + len(note)] += note[: len(out) - start]
        onset += seconds
    return out


def generate_music_demo(out_dir: Path, n_train: int = 60, n_test: int = 8, seed: int = 0,
                        sample_rate: int = 16000, progress: bool = True) -> dict:
    """Write two unpaired instrument domains under ``out_dir/music``; return a summary dict.

    A is piano-like, B clarinet-like; each domain and split gets its own seeded phrases (never
    the same ones). Layout: ``music/{A,B}/{train,test}/{A,B}_{split}_NNNN.wav`` (4-8 s) and
    ``music/{A,B}/phrases.tsv`` (``file<TAB>notes`` as ``midi:seconds`` pairs).
    """
    _check_counts(n_train, n_test, sample_rate)
    root = Path(out_dir) / "music"
    summary: dict = {"sample_rate": sample_rate, "root": str(root), "domains": {}}
    counts = {"train": n_train, "test": n_test}
    with tqdm(total=2 * (n_train + n_test), desc="demo music", unit="clip",
              disable=not progress) as bar:
        for domain, timbre in TIMBRES.items():
            summary["domains"][domain] = _music_domain(root / domain, domain, timbre, counts,
                                                       seed, sample_rate, bar)
    return summary


def _music_domain(folder: Path, domain: str, timbre: str, counts: dict[str, int], seed: int,
                  sample_rate: int, bar: tqdm) -> dict:
    rows = ["file\tnotes"]
    info: dict[str, Any] = {"timbre": timbre}
    for split in SPLITS:
        _clear_old(folder / split, f"{domain}_{split}")
        rng = np.random.default_rng([seed, 200 + 2 * "AB".index(domain) + SPLITS.index(split)])
        seconds = 0.0
        for index in range(counts[split]):
            notes = melody(rng)
            wave = trim_and_normalize(render_melody(notes, timbre, sample_rate), sample_rate,
                                      top_db=60.0)
            name = f"{split}/{domain}_{split}_{index:04d}.wav"
            save(folder / name, wave, sample_rate)
            rows.append(f"{name}\t" + " ".join(f"{midi}:{dur:.3f}" for midi, dur in notes))
            seconds += len(wave) / sample_rate
            bar.update(1)
        info[split], info[f"{split}_seconds"] = counts[split], round(seconds, 2)
    atomic_write_text(folder / "phrases.tsv", "\n".join(rows) + "\n")
    return info
