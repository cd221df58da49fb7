"""Training data: rendering songs to stems, building dataset folders, and reading them.

- building: :mod:`.render` (FluidSynth stems, levels, activity), :mod:`.build` (``instructme
  data build``), :mod:`.triplets` (source / instruction / target records), :mod:`.ingest` and
  :mod:`.stems` (users' own multitrack folders), :mod:`.audio_folder` (recorded music for the
  VAE), :mod:`.packaged_audio` (audio shipped with installed packages);
- reading: :mod:`.folder` (songs, manifests, :class:`~instructme.dataset.folder.TripletDataset`)
  and :mod:`.stats` (``instructme data stats``).

Models and the edit pipeline import nothing from here; training and evaluation read datasets
through :mod:`.folder`.
"""
