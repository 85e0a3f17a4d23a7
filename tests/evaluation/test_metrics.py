"""Metrics: known answers on synthetic signals, and on real VCC2016 speech when it is present.

The speaker encoder and the ASR decoder are loaded once for the module (fixtures of module
scope); VCC2016 tests skip with the reason when ../shared/data is not beside the repo.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import SHARED_DATA, speech_like
from hypothesis import given, settings
from hypothesis import strategies as st

from melganvc.evaluation.content import corpus_error_rates, error_rates
from melganvc.evaluation.pitch import f0_contour, f0_statistics, semitones
from melganvc.evaluation.results import EvalItem
from melganvc.evaluation.scoring import evaluate_systems
from melganvc.evaluation.spectral import _cepstrum, dtw_path, spectral_distance, timbre_profile
from melganvc.io.audio import load
from melganvc.judges.pocketsphinx import Transcriber
from melganvc.judges.speaker import (
    SpeakerEncoder,
    accept_rate,
    centroid_of,
    cosine,
    speaker_centroid,
    speaker_similarity,
)
from melganvc.judges.text import normalize_text, number_words
from melganvc.judges.waves import wave_key

SR = 16000
VCC = SHARED_DATA / "vcc2016"
needs_vcc = pytest.mark.skipif(not VCC.is_dir(), reason=f"VCC2016 data not present at {VCC}")


def sine(freq: float, seconds: float = 1.0, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def harmonic(f0: float, seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    """Harmonic tone with a gentle vibrato: a stand-in for a sustained vowel."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.02 * np.sin(2 * np.pi * 4 * t))) / SR
    wave = sum(np.sin(k * phase) / k for k in range(1, int(4000 / f0)))
    wave = 0.2 * wave / np.abs(wave).max() + 0.001 * rng.standard_normal(t.size)
    return wave.astype(np.float32)


_VCC_CACHE: dict[tuple[str, str], np.ndarray] = {}


def vcc(speaker: str, utterance: str) -> np.ndarray:
    key = (speaker, utterance)
    if key not in _VCC_CACHE:
        _VCC_CACHE[key] = load(VCC / speaker / f"{utterance}.wav", SR)
    return _VCC_CACHE[key]


@pytest.fixture(scope="module")
def encoder() -> SpeakerEncoder:
    return SpeakerEncoder()


@pytest.fixture(scope="module")
def transcriber() -> Transcriber:
    return Transcriber()


# ------------------------------------------------------------------ DTW and the MCD convention


def _dtw_bruteforce(cost: np.ndarray) -> float:
    n, m = cost.shape
    acc = np.full((n + 1, m + 1), np.inf)
    acc[0, 0] = 0.0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            acc[i, j] = cost[i - 1, j - 1] + min(acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1])
    return float(acc[n, m])


@pytest.mark.parametrize("shape", [(1, 1), (1, 6), (6, 1), (7, 9), (23, 14)])
def test_dtw_path_is_optimal_and_monotonic(shape: tuple[int, int]) -> None:
    cost = np.random.default_rng(sum(shape)).random(shape)
    i, j = dtw_path(cost)
    assert (i[0], j[0]) == (0, 0) and (i[-1], j[-1]) == (shape[0] - 1, shape[1] - 1)
    steps = set(zip(np.diff(i).tolist(), np.diff(j).tolist(), strict=True))
    assert steps <= {(1, 1), (1, 0), (0, 1)}
    assert cost[i, j].sum() == pytest.approx(_dtw_bruteforce(cost))


def test_dtw_recovers_a_time_stretch() -> None:
    a = np.sin(np.linspace(0, 6, 40))[:, None]
    b = np.repeat(a, 2, axis=0)  # every frame twice
    i, j = dtw_path(np.abs(a - b.T))
    np.testing.assert_array_equal(i, j // 2)


def test_dtw_breaks_ties_diagonal_first_then_along_i() -> None:
    """The order the hand-written DTW used, so MCD/LSD paths did not change with librosa's."""
    i, j = dtw_path(np.zeros((3, 5)))
    assert list(zip(i.tolist(), j.tolist())) == [(0, 0), (0, 1), (0, 2), (1, 3), (2, 4)]
    i, j = dtw_path(np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]]))
    assert list(zip(i.tolist(), j.tolist())) == [(0, 0), (1, 1), (2, 1)]
    with pytest.raises(ValueError, match="non-empty"):
        dtw_path(np.zeros((0, 3)))


def test_dct_gives_cepstra_in_the_mcd_convention() -> None:
    """L(w) = c0 + 2 sum c_k cos(k w) sampled on the band grid comes back as c exactly."""
    coefficients = np.random.default_rng(1).normal(size=25)
    bands = 80
    w = np.pi * (np.arange(bands) + 0.5) / bands
    spectrum = coefficients[0] + 2 * sum(coefficients[k] * np.cos(k * w) for k in range(1, 25))
    np.testing.assert_allclose(_cepstrum(spectrum, 25), coefficients, atol=1e-12)


# ------------------------------------------------------------------ spectral distance


def test_identical_audio_has_zero_mcd_and_lsd() -> None:
    wave = harmonic(150.0, 1.5)
    result = spectral_distance(wave, wave)
    assert result.mcd == pytest.approx(0.0, abs=1e-6)
    assert result.lsd == pytest.approx(0.0, abs=1e-6)
    assert result.path_length == result.frames[0] == result.frames[1]


def test_mcd_ignores_gain_and_leading_silence() -> None:
    wave = harmonic(150.0, 1.5)
    padded = np.concatenate([np.zeros(SR // 2, np.float32), 0.25 * wave])
    assert spectral_distance(padded, wave).mcd < 0.05


def test_mcd_grows_with_spectral_difference() -> None:
    wave = harmonic(150.0, 1.5)
    noise = np.random.default_rng(0).standard_normal(wave.size).astype(np.float32)
    light = spectral_distance(wave + 0.001 * noise, wave).mcd
    heavy = spectral_distance(wave + 0.03 * noise, wave).mcd
    assert 0.0 < light < heavy
    assert spectral_distance(harmonic(300.0, 1.5), wave).mcd > light


def _regression_pairs() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(7)
    base = harmonic(150.0, 1.5)
    stretched = harmonic(165.0, 1.9, seed=3)
    gap = np.concatenate([np.zeros(SR // 4, np.float32), 0.5 * stretched,
                          np.zeros(SR // 8, np.float32)])
    return {
        "octave": (harmonic(300.0, 1.5, seed=1), base),
        "noisy": (base + 0.03 * rng.standard_normal(base.size).astype(np.float32), base),
        "stretched": (gap, base),  # other length, silence at both ends: a non-diagonal path
    }


# (mcd, lsd, path_length, frames), recorded with the hand-written DCT matrix and DTW that
# scipy.fft.dct and librosa.sequence.dtw replaced.
_RECORDED = {
    "octave": (5.8486619477036275, 15.201287560556324, 151, (151, 151)),
    "noisy": (6.108811324603149, 22.096778890371702, 151, (151, 151)),
    "stretched": (0.8491567605541485, 10.759893902989164, 198, (193, 151)),
}


@pytest.mark.parametrize("name", sorted(_RECORDED))
def test_spectral_distance_matches_the_recorded_values(name: str) -> None:
    mcd, lsd, path_length, frames = _RECORDED[name]
    result = spectral_distance(*_regression_pairs()[name])
    assert result.mcd == pytest.approx(mcd, rel=1e-6)
    assert result.lsd == pytest.approx(lsd, rel=1e-6)
    assert (result.path_length, result.frames) == (path_length, frames)


# ------------------------------------------------------------------ text metrics


def test_timbre_profile_tells_tone_colours_apart_whatever_the_level() -> None:
    bright = [harmonic(220.0, seed=s) + 0.5 * harmonic(1760.0, seed=s) for s in range(3)]
    dull = [harmonic(220.0, seed=s) for s in range(3)]
    p_bright = [timbre_profile(w) for w in bright]
    p_dull = [timbre_profile(w) for w in dull]
    assert np.linalg.norm(p_bright[0]) == pytest.approx(1.0) and abs(p_bright[0].mean()) < 1e-9
    assert cosine(timbre_profile(0.01 * bright[0]), p_bright[0]) == pytest.approx(1.0, abs=1e-6)
    c_bright, c_dull = centroid_of(np.array(p_bright[1:])), centroid_of(np.array(p_dull[1:]))
    assert cosine(p_bright[0], c_bright) > cosine(p_bright[0], c_dull) + 0.01
    assert cosine(p_dull[0], c_dull) > cosine(p_dull[0], c_bright) + 0.01
    assert np.isnan(timbre_profile(np.zeros(SR, np.float32))).all()


def test_normalize_text_and_error_rates() -> None:
    assert normalize_text("<s> They CAME, and [noise] went! </s> <sil>") == "they came and went"
    assert error_rates("they came and went", "they came and went") == (0.0, 0.0)
    cer, wer = error_rates("they came and went", "the came and went")
    assert cer == pytest.approx(1 / 18) and wer == pytest.approx(1 / 4)
    assert error_rates("", "") == (0.0, 0.0)
    assert error_rates("", "hello") == (1.0, 1.0)
    assert error_rates("hello world", "") == (1.0, 1.0)


@pytest.mark.parametrize(("written", "spoken"), [
    ("Mr. Smith paid $5, 10% of 1,200.",
     "mister smith paid five dollars ten percent of one thousand two hundred"),
    ("On the 21st, at 3.5 km & 40th", "on the twenty first at three point five km and fortieth"),
    ("2024 - 1999 (laughs) um OK",
     "two thousand twenty four one thousand nine hundred ninety nine okay"),
    ("Don\u2019t 'quote' the caf\u00e9's well-known 12th",
     "don't quote the cafe's well known twelfth"),
    ("[BLANK_AUDIO]", ""),
])
def test_normalize_text_spells_numbers_and_drops_style(written: str, spoken: str) -> None:
    """Whisper writes digits and punctuation, pocketsphinx and people say words: one form."""
    assert normalize_text(written) == spoken
    assert normalize_text(spoken) == spoken  # idempotent


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="aZ09 .,'-$%&()[]<>stndrh\u2019\u00e9", max_size=40))
def test_normalize_text_is_idempotent(text: str) -> None:
    once = normalize_text(text)
    assert normalize_text(once) == once
    assert all(c in "abcdefghijklmnopqrstuvwxyz' " for c in once)


def test_numbers_written_either_way_cost_nothing() -> None:
    assert error_rates("I have three cats and 21 dogs", "i have 3 cats and twenty-one dogs") == (
        0.0, 0.0)
    assert number_words(0) == "zero" and number_words(1_000_001) == "one million one"
    assert number_words(110) == "one hundred ten"


def test_corpus_error_rates_pool_the_edits() -> None:
    cer, wer = corpus_error_rates(["they came and went", "hello world", ""],
                                  ["the came and went", "", "ignored"])
    assert cer == pytest.approx((1 + 11) / (18 + 11))
    assert wer == pytest.approx((1 + 2) / (4 + 2))
    assert all(math.isnan(v) for v in corpus_error_rates([""], ["x"]))


# ------------------------------------------------------------------ F0


def test_f0_of_a_sine_and_of_silence() -> None:
    stats = f0_statistics(sine(200.0))
    assert stats.mean_hz == pytest.approx(200.0, rel=0.02)
    assert stats.voiced_fraction > 0.8 and stats.log_std < 0.02
    silent = f0_statistics(np.zeros(SR, np.float32))
    assert silent.voiced_frames == 0 and math.isnan(silent.mean_hz)


def test_f0_pyin_fallback_agrees() -> None:
    wave = harmonic(180.0, 0.6)
    world = f0_contour(wave, method="world")
    pyin = f0_contour(wave, method="pyin")
    assert np.exp(np.log(world[world > 0]).mean()) == pytest.approx(180.0, rel=0.03)
    assert np.exp(np.log(pyin[pyin > 0]).mean()) == pytest.approx(180.0, rel=0.03)
    with pytest.raises(ValueError, match="unknown F0 method"):
        f0_contour(wave, method="crepe")


def test_semitones() -> None:
    assert semitones(math.log(2.0)) == pytest.approx(12.0)


# ------------------------------------------------------------------ vectors


def test_cosine_and_centroid() -> None:
    a, b = np.array([1.0, 0.0]), np.array([0.0, 2.0])
    assert cosine(a, a) == pytest.approx(1.0) and cosine(a, b) == pytest.approx(0.0)
    assert math.isnan(cosine(a, np.zeros(2)))
    centroid = centroid_of(np.array([[1.0, 0.0], [0.0, 1.0], [np.nan, np.nan]]))
    np.testing.assert_allclose(centroid, [math.sqrt(0.5)] * 2, rtol=1e-6)
    assert wave_key(np.ones(4)) == wave_key(np.ones(4, np.float32))
    assert wave_key(np.ones(4)) != wave_key(np.ones(4), 8000)


# ------------------------------------------------------------------ real speech (VCC2016)

TRAIN = [f"1000{i:02d}" for i in (1, 3, 4, 5, 6)]
HELD_OUT = ["200001", "200002"]


@needs_vcc
def test_same_audio_similarity_is_one(encoder: SpeakerEncoder) -> None:
    wave = vcc("SF1", "100001")
    assert cosine(encoder.embed(wave), encoder.embed(wave.copy())) == pytest.approx(1.0, abs=1e-5)
    assert np.linalg.norm(encoder.embed(wave)) == pytest.approx(1.0, abs=1e-5)
    # resampled input goes through the same 16 kHz path
    assert encoder.embed(wave[::2], 8000).shape == (256,)


@needs_vcc
def test_other_speaker_is_less_similar_than_same_speaker(encoder: SpeakerEncoder) -> None:
    pairs_same = [("100001", "100003"), ("100004", "100005")]
    same = np.mean([cosine(encoder.embed(vcc(s, a)), encoder.embed(vcc(s, b)))
                    for s in ("SF1", "TM1") for a, b in pairs_same])
    cross = np.mean([cosine(encoder.embed(vcc("SF1", u)), encoder.embed(vcc("TM1", u)))
                     for u in ("100001", "100003", "100004", "100005")])
    assert same > cross + 0.15, (same, cross)


@needs_vcc
def test_accept_rate_against_centroids(encoder: SpeakerEncoder) -> None:
    female = speaker_centroid(encoder, [vcc("SF1", u) for u in TRAIN])
    male = speaker_centroid(encoder, [vcc("TM1", u) for u in TRAIN])
    as_female = [speaker_similarity(encoder, vcc("SF1", u), female, male) for u in HELD_OUT]
    as_male = [speaker_similarity(encoder, vcc("TM1", u), female, male) for u in HELD_OUT]
    assert accept_rate(as_female) == 1.0 and accept_rate(as_male) == 0.0
    assert all(s.to_target > 0.7 for s in as_female)


def test_silent_audio_gets_no_embedding(encoder: SpeakerEncoder) -> None:
    embedding = encoder.embed(np.zeros(SR, np.float32))
    assert np.isnan(embedding).all()
    assert not speaker_similarity(encoder, np.zeros(SR, np.float32), embedding, embedding).accepted


def test_transcript_does_not_depend_on_the_previous_utterance(transcriber: Transcriber) -> None:
    """pocketsphinx's live cepstral mean carried over between utterances: the same audio read
    differently after loud noise ('ooh ooh ooh ooh' became 'man who who who')."""
    noise = np.random.default_rng(0).standard_normal(2 * SR).astype(np.float32) * 0.5
    for seed, f0, formants in [(0, 110.0, (500, 1500, 2500)), (2, 150.0, (300, 900, 2200))]:
        wave = speech_like(2.0, f0=f0, formants=formants, seed=seed)
        fresh = Transcriber().transcribe(wave)
        transcriber.transcribe(noise)
        transcriber._cache.clear()
        assert transcriber.transcribe(wave) == fresh


@needs_vcc
def test_transcripts_give_zero_cer_for_same_sentence_high_for_another(
        transcriber: Transcriber) -> None:
    went = transcriber.transcribe(vcc("SF1", "100002"))  # "they came and went" (short)
    other = transcriber.transcribe(vcc("SF1", "100015"))
    assert went and other
    assert error_rates(went, transcriber.transcribe(vcc("SF1", "100002").copy())) == (0.0, 0.0)
    cer, wer = error_rates(went, other)
    assert cer > 0.5 and wer > 0.5


@needs_vcc
def test_mcd_of_parallel_speakers() -> None:
    female, male = vcc("SF1", "100001"), vcc("TM1", "100001")
    assert spectral_distance(female, female).mcd == pytest.approx(0.0, abs=1e-6)
    cross = spectral_distance(female, male)
    assert 2.0 < cross.mcd < 12.0 and cross.lsd > 3.0
    assert cross.path_length >= max(cross.frames)


@needs_vcc
def test_f0_female_above_male() -> None:
    female = f0_statistics([vcc("SF1", u) for u in TRAIN[:3]])
    male = f0_statistics([vcc("TM1", u) for u in TRAIN[:3]])
    assert semitones(female.log_mean - male.log_mean) > 5.0
    assert 150 < female.mean_hz < 300 and 80 < male.mean_hz < 170


@needs_vcc
def test_evaluate_systems_on_real_speech(encoder: SpeakerEncoder,
                                         transcriber: Transcriber) -> None:
    """Source SF1 -> target TM1: an ideal 'converted' (the real TM1 sentences) beats identity."""
    utts = ["100002", "100015"]
    refs = {s: [vcc(s, u) for u in TRAIN] for s in ("SF1", "TM1")}
    results = evaluate_systems(
        {
            "converted": [EvalItem(u, vcc("TM1", u), vcc("SF1", u), vcc("TM1", u)) for u in utts],
            "identity": [EvalItem(u, vcc("SF1", u), vcc("SF1", u), vcc("TM1", u)) for u in utts],
            "oracle": [EvalItem(u, vcc("TM1", u), None, None) for u in TRAIN[:2]],
        },
        target_refs=refs["TM1"], source_refs=refs["SF1"], encoder=encoder,
        transcriber=transcriber,
    )
    converted, identity, oracle = (results["systems"][k]["mean"]
                                   for k in ("converted", "identity", "oracle"))
    assert converted["accept_rate"] == 1.0 and identity["accept_rate"] == 0.0
    assert converted["sim_target"] > identity["sim_target"] + 0.15
    assert converted["mcd"] == pytest.approx(0.0, abs=1e-6) and identity["mcd"] > 2.0
    assert identity["cer"] == 0.0 and converted["cer"] is not None
    assert identity["f0_mean_diff_st"] > 5.0 and abs(converted["f0_mean_diff_st"]) < 3.0
    # oracle items are target references: scored leave-one-out, so not trivially 1.0
    assert 0.6 < oracle["sim_target"] < 0.99 and oracle["accept_rate"] == 1.0
    assert oracle["cer"] is None and oracle["mcd"] is None
    assert results["references"]["target_source_cosine"] < 0.9
