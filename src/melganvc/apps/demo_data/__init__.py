"""Offline demo corpora: two synthetic speakers (espeak-ng) and two synthetic instruments (numpy).

One module per job: ``sentences`` (the seeded sentence grammar that keeps the four voice sets
disjoint), ``espeak`` (espeak-ng through ctypes in a worker process), ``music`` (melodies and
additive-synthesis instruments), ``corpora`` (the writers that put them on disk) and
``instruments`` (scores played by sampled real instruments through FluidSynth). This
package re-exports what the rest of melganvc imports.
"""

from melganvc.apps.demo_data.corpora import generate_music_demo, generate_voice_demo
from melganvc.apps.demo_data.instruments import generate_instrument_corpus
from melganvc.apps.demo_data.music import render_note
from melganvc.apps.demo_data.sentences import sentence_stream

__all__ = ["generate_instrument_corpus", "generate_music_demo", "generate_voice_demo", "render_note", "sentence_stream"]
