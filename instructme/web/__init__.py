"""The web studio: upload a clip, type an instruction, listen to and compare the edit.

``instructme serve`` runs :func:`instructme.web.app.create_app` under uvicorn. The page edits
with an :class:`~instructme.editing.pipeline.EditPipeline` (InstructME, arXiv 2308.14360:
add, remove, extract, replace, remix and multi-round edits, Sec. 3.1), one edit at a time
per process.

Modules: :mod:`~instructme.web.store` (audio kept in a temporary folder, addressed by id),
:mod:`~instructme.web.jobs` (the edit queue and its worker thread),
:mod:`~instructme.web.spectrogram` (PNG spectrograms), :mod:`~instructme.web.app` (the HTTP
API and the page), :mod:`~instructme.web.server` (uvicorn, in the foreground or a thread).
"""
