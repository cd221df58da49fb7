"""Procedural music: scores (:mod:`.score`), functional harmony (:mod:`.harmony`), melodies,
drum grooves and accompaniment, the multi-style arranger (:mod:`.arranger`) and music21
corpus pieces as multitrack songs (:mod:`.corpus`, chord and key labels in
:mod:`.chord_labels`).

Everything here is symbolic (notes, parts, chords); nothing renders audio or writes files.
It depends only on :mod:`instructme.vocab` (instrument classes, styles) and
:mod:`instructme.errors`; :mod:`instructme.dataset` renders and cuts it into training data.
"""
