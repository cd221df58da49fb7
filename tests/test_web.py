"""Web studio API: a real server on a free loopback port, editing with the tiny pipeline."""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from web_support import Client, GatedPipeline, multipart, tiny_pipeline, wav_bytes, write_wav

from instructme.instructions import parse_instruction
from instructme.web.app import StudioSettings, create_app
from instructme.web.server import is_loopback, start_in_thread
from instructme.web.store import AudioStore

MAX_MB = 0.25  # 262,144 bytes
MAX_SECONDS = 3.0


@pytest.fixture(scope="module")
def pipe(tmp_path_factory: pytest.TempPathFactory) -> GatedPipeline:
    return GatedPipeline(tiny_pipeline(tmp_path_factory.mktemp("pipeline")))


@pytest.fixture(scope="module")
def studio(pipe: GatedPipeline, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("studio")
    examples = root / "examples"
    examples.mkdir()
    write_wav(examples / "chords.wav", 1.0)
    write_wav(examples / "band.flac", 1.0)
    (examples / "notes.txt").write_text("not audio\n")
    write_wav(examples / "too-long.wav", MAX_SECONDS + 1.0)
    (root / "secret.txt").write_text("TOPSECRET\n")
    write_wav(root / "outside.wav", 0.5)
    os.symlink(root / "outside.wav", examples / "link.wav")
    settings = StudioSettings(max_upload_mb=MAX_MB, max_seconds=MAX_SECONDS,
                              examples_dir=examples, max_steps=20,
                              model_name="tiny test pipeline", store_root=root / "store")
    app = create_app(pipe, settings)
    server = start_in_thread(app)
    yield Client(server.url), app, root
    server.stop()


def _upload_ok(client: Client, seconds: float = 1.0, sample_rate: int = 16000) -> dict:
    status, item = client.upload(wav_bytes(seconds, sample_rate), "my clip.wav")
    assert status == 200, item
    return item


def test_page_static_and_info(studio) -> None:
    client, _, _ = studio
    status, headers, page = client.request("GET", "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    for element in (b'id="file"', b'id="instruction"', b'id="run"', b'id="history"'):
        assert element in page
    assert b"://" not in page  # no external assets (no CDN)
    for asset in ("/static/app.js", "/static/style.css"):
        status, _, body = client.request("GET", asset)
        assert status == 200 and len(body) > 500
    status, info = client.json("GET", "/api/info")
    assert status == 200
    assert info["limits"]["max_upload_mb"] == MAX_MB
    assert info["limits"]["max_seconds"] == MAX_SECONDS
    assert ".wav" in info["formats"] and ".flac" in info["formats"]
    assert info["defaults"]["steps"] == 3
    # Only the short regular wav inside the folder: not the too-long one, not the link out.
    assert [e["name"] for e in info["examples"]] == ["band.flac", "chords.wav"]
    assert set(info["suggestions"]) == {"add", "remove", "extract", "replace", "remix",
                                        "multiround"}
    for task, texts in info["suggestions"].items():
        assert texts
        for text in texts:
            assert parse_instruction(text)[0] == task, text


def test_upload_edit_download_and_chain(studio) -> None:
    client, _, _ = studio
    status, item = client.upload(wav_bytes(1.0, 22050, channels=2), "../../My Song.wav")
    assert status == 200, item
    assert len(item["id"]) == 32 and item["name"] == "My Song.wav"
    assert item["sample_rate"] == 22050 and item["seconds"] == pytest.approx(1.0, abs=1e-3)
    assert "path" not in item

    status, headers, data = client.request("GET", item["audio_url"])
    assert status == 200 and headers["content-type"] == "audio/wav"
    x, sr = sf.read(io.BytesIO(data))
    assert sr == 22050 and x.shape == (22050,)  # decoded to mono
    status, headers, png = client.request("GET", item["spectrogram_url"])
    assert status == 200 and png[:8] == b"\x89PNG\r\n\x1a\n"

    status, job = client.json("POST", "/api/edit", {"audio": item["id"],
                                                    "instruction": "remove the drums",
                                                    "steps": 3, "guidance": 2.0, "seed": 1})
    assert status == 200, job
    assert job["state"] in ("queued", "running", "done")
    job = client.wait_job(job["job"])
    assert job["state"] == "done", job["error"]
    assert (job["task"], job["args"]) == ("remove", {"instrument": "drums"})
    assert job["step"] == job["total"] == 3  # sampler progress reached the end
    result = job["result"]
    assert result["parent"] == item["id"] and result["instruction"] == "remove the drums"
    assert result["name"] == "My Song - remove the drums.wav"
    status, headers, data = client.request("GET", result["audio_url"] + "?download=1")
    assert status == 200 and headers["content-disposition"].startswith("attachment")
    y, sr = sf.read(io.BytesIO(data))
    assert sr == 22050 and y.shape == x.shape and np.abs(y).max() > 0
    assert job["preserve"] is True  # the studio's default
    part = job["part"]  # source-preserving output: the removed part, downloadable
    assert part["kind"] == "part" and part["name"] == "My Song - remove the drums - part.wav"
    status, _, data = client.request("GET", part["audio_url"] + "?download=1")
    p, sr = sf.read(io.BytesIO(data))
    assert status == 200 and sr == 22050
    np.testing.assert_allclose(y + p, x, atol=1e-3)  # output + removed part = the source

    # Chain a multi-round instruction on the result.
    status, job2 = client.json("POST", "/api/edit", {"audio": result["id"], "steps": 2,
                                                     "instruction": "add a piano then remix it "
                                                                    "as jazz"})
    assert status == 200, job2
    job2 = client.wait_job(job2["job"])
    assert job2["state"] == "done", job2["error"]
    assert job2["task"] == "multiround" and len(job2["args"]["rounds"]) == 2
    assert job2["total"] == 4 and job2["result"]["parent"] == result["id"]
    assert job2["result"]["name"] == "My Song - add a piano then remix it as jazz.wav"
    assert job2["part"] is None  # a remix last: no separate part


def test_example_is_loaded_by_name(studio) -> None:
    client, _, _ = studio
    status, item = client.json("POST", "/api/examples/chords.wav")
    assert status == 200 and item["kind"] == "example" and item["seconds"] == 1.0
    for name in ("too-long.wav", "link.wav", "nope.wav"):
        status, err = client.json("POST", f"/api/examples/{name}")
        assert status == 404 and "no example" in err["error"]


@pytest.mark.parametrize("case", ["not-audio", "too-large", "too-large-chunked", "too-long",
                                  "empty", "no-file"])
def test_bad_uploads_get_clear_errors(studio, case: str) -> None:
    client, app, _ = studio
    before = len(app.state.store)
    if case == "not-audio":
        status, err = client.upload(b"this is not audio " * 100, "notes.wav")
        assert status == 400 and "notes.wav: not a readable audio file" in err["error"]
    elif case in ("too-large", "too-large-chunked"):
        data = wav_bytes(MAX_SECONDS - 0.5, 48000, channels=2)  # 2.5 s: short, but 480 kB
        assert len(data) > MAX_MB * 1024 * 1024
        status, err = client.upload(data, "big.wav", chunked=case.endswith("chunked"))
        assert status == 413 and "too large" in err["error"] and "0.25 MB" in err["error"]
    elif case == "too-long":
        status, err = client.upload(wav_bytes(MAX_SECONDS + 1.0, 8000), "long.wav")
        assert status == 400 and "4.0 s long" in err["error"] and "at most 3 s" in err["error"]
    elif case == "empty":
        status, err = client.upload(b"", "empty.wav")
        assert status == 400 and "empty" in err["error"]
    else:
        body, ctype = multipart(b"x", "a.wav", field="other")
        status, _, out = client.request("POST", "/api/upload", body, {"Content-Type": ctype})
        err = json.loads(out)
        assert status == 400 and "no file" in err["error"]
    assert str(app.state.store.root) not in err["error"]  # no server paths in messages
    assert len(app.state.store) == before
    assert not any((app.state.store.root / "incoming").iterdir())  # nothing left behind


def test_bad_edit_requests(studio) -> None:
    client, _, _ = studio
    item = _upload_ok(client)
    status, err = client.json("POST", "/api/edit", {"audio": item["id"],
                                                    "instruction": "wibble wobble"})
    assert status == 400 and "could not understand" in err["error"]
    assert "remove the drums" in err["error"]  # lists what is understood
    status, err = client.json("POST", "/api/edit", {"audio": item["id"],
                                                    "instruction": "add a kazoo"})
    assert status == 400 and "unknown instrument" in err["error"]
    status, err = client.json("POST", "/api/edit", {"audio": item["id"],
                                                    "instruction": "make it sound purple"})
    assert status == 400 and "unknown style 'purple'" in err["error"]
    status, err = client.json("POST", "/api/edit", {"audio": item["id"], "instruction": " "})
    assert status == 400 and "empty instruction" in err["error"]
    status, err = client.json("POST", "/api/edit", {"audio": "0" * 32,
                                                    "instruction": "add a piano"})
    assert status == 404 and "unknown or expired audio" in err["error"]
    status, err = client.json("POST", "/api/edit", {"audio": item["id"], "steps": 21,
                                                    "instruction": "add a piano"})
    assert status == 400 and "at most 20" in err["error"]
    status, err = client.json("POST", "/api/edit", {"audio": item["id"], "steps": "many",
                                                    "instruction": "add a piano"})
    assert status == 400 and err["error"].startswith("steps:")
    status, err = client.json("POST", "/api/edit", {"audio": item["id"], "sampler": "euler",
                                                    "instruction": "add a piano"})
    assert status == 400 and err["error"].startswith("sampler:")
    status, err = client.json("GET", "/api/jobs/" + "f" * 32)
    assert status == 404 and "unknown or expired job" in err["error"]


def test_path_traversal_never_serves_files(studio) -> None:
    client, app, root = studio
    item = _upload_ok(client)
    wav = str(app.state.store.get(item["id"]).path)
    paths = [
        ("GET", "/api/audio/../../../../etc/passwd"),
        ("GET", "/api/audio/..%2F..%2F..%2F..%2Fetc%2Fpasswd"),
        ("GET", "/api/audio/%2e%2e%2f%2e%2e%2fsecret.txt"),
        ("GET", "/api/audio/%2Fetc%2Fpasswd"),
        ("GET", "/api/audio//etc/passwd"),
        ("GET", "/api/audio/" + wav),
        ("GET", "/api/audio/" + wav.replace("/", "%2F")),
        ("GET", f"/api/audio/{item['id']}/../../secret.txt"),
        ("GET", f"/api/audio/{item['id']}%2F..%2F..%2Fsecret.txt"),
        ("GET", "/api/audio/..%252F..%252Fsecret.txt"),
        ("GET", "/api/audio/" + "../" * 8 + "etc/passwd/spectrogram.png"),
        ("GET", "/static/../app.py"),
        ("GET", "/static/..%2Fapp.py"),
        ("GET", "/static/%2e%2e/%2e%2e/web/app.py"),
        ("GET", "/static/....//....//app.py"),
        ("GET", "/static//etc/passwd"),
        ("GET", "/static/%2Fetc%2Fpasswd"),
        ("POST", "/api/examples/..%2Fsecret.txt"),
        ("POST", "/api/examples/..%2Foutside.wav"),
        ("POST", "/api/examples/%2Fetc%2Fpasswd"),
        ("POST", "/api/examples/" + str(root / "outside.wav").replace("/", "%2F")),
        ("GET", "/api/jobs/..%2F..%2Fetc%2Fpasswd"),
    ]
    for method, path in paths:
        status, _, body = client.request(method, path)
        assert 400 <= status < 500, (path, status)
        for leak in (b"root:", b"TOPSECRET", b"RIFF", b"import ", str(root).encode()):
            assert leak not in body, (path, leak)


def test_second_edit_waits_with_visible_position(studio, pipe: GatedPipeline) -> None:
    client, _, _ = studio
    item = _upload_ok(client)
    pipe.gate.clear()
    try:
        ids = []
        for text in ("add a piano", "remove the bass", "extract the drums"):
            status, job = client.json("POST", "/api/edit", {"audio": item["id"],
                                                            "instruction": text, "steps": 2})
            assert status == 200, job
            ids.append(job["job"])
        deadline = time.monotonic() + 30
        while client.json("GET", f"/api/jobs/{ids[0]}")[1]["state"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        states = [client.json("GET", f"/api/jobs/{i}")[1] for i in ids]
        assert [(s["state"], s["position"], s["ahead"]) for s in states] == [
            ("running", 0, 0), ("queued", 1, 1), ("queued", 2, 2)]
    finally:
        pipe.gate.set()
    jobs = [client.wait_job(i) for i in ids]
    assert [j["state"] for j in jobs] == ["done"] * 3
    assert pipe.calls[-3:] == ["add a piano", "remove the bass", "extract the drums"]


def test_full_queue_is_refused(pipe: GatedPipeline, tmp_path: Path) -> None:
    app = create_app(pipe, StudioSettings(max_queue=1, store_root=tmp_path / "store"))
    server = start_in_thread(app)
    client = Client(server.url)
    pipe.gate.clear()
    try:
        item = _upload_ok(client)
        codes = []
        for _ in range(3):  # one runs, one waits, the third is refused
            status, body = client.json("POST", "/api/edit", {"audio": item["id"], "steps": 1,
                                                             "instruction": "add a piano"})
            codes.append(status)
            time.sleep(0.2)
        assert codes == [200, 200, 503] and "already waiting" in body["error"]
    finally:
        pipe.gate.set()
        server.stop()
    assert not (tmp_path / "store").exists()  # the temporary folder goes on shutdown


def test_server_sweeps_old_clips_and_rejects_malformed_forms(pipe: GatedPipeline,
                                                              tmp_path: Path) -> None:
    app = create_app(pipe, StudioSettings(max_age_s=0.3, sweep_every_s=0.1,
                                          store_root=tmp_path / "store"))
    server = start_in_thread(app)
    client = Client(server.url)
    try:
        item = _upload_ok(client)
        assert client.request("GET", item["audio_url"])[0] == 200
        deadline = time.monotonic() + 10  # each use restarts the clip's age: don't look
        while list((tmp_path / "store").glob("*.wav")):
            assert time.monotonic() < deadline, "the clip was never swept"
            time.sleep(0.1)
        assert client.request("GET", item["audio_url"])[0] == 404
        status, _, out = client.request("POST", "/api/upload", b"--x\r\ngarbage",
                                        {"Content-Type": "multipart/form-data; boundary=x"})
        assert 400 <= status < 500 and b"error" in out
        status, _, out = client.request("POST", "/api/upload", b'{"file": "a"}',
                                        {"Content-Type": "application/json"})
        assert status == 400 and b"no file" in out
    finally:
        server.stop()


def test_store_sweeps_by_age_and_keeps_busy_clips(tmp_path: Path) -> None:
    store = AudioStore(tmp_path / "s", max_age_s=60)
    x = np.zeros(1600, np.float32)
    old, busy, fresh = (store.add_array(x, 16000, f"{n}.wav", "upload")
                        for n in ("old", "busy", "fresh"))
    store.spectrogram(old.id)
    stray = store.incoming_path()
    stray.write_bytes(b"partial upload")
    past = time.time() - 120
    os.utime(stray, (past, past))
    old.last_used = busy.last_used = past
    assert store.sweep(keep={busy.id}) == 1
    assert not old.path.exists() and not old.path.with_suffix(".png").exists()
    assert not stray.exists() and busy.path.exists() and fresh.path.exists()
    with pytest.raises(KeyError):
        store.get(old.id)
    for bad in ("../" + fresh.id, fresh.id.upper(), fresh.id + ".wav", "", str(fresh.path)):
        with pytest.raises(KeyError):
            store.get(bad)
    store.close()
    assert not (tmp_path / "s").exists()


def test_stale_studio_folders_of_dead_servers_are_removed(tmp_path: Path) -> None:
    import subprocess
    import sys

    from instructme.web.store import remove_stale_roots

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    for name, owner in (("instructme-web-dead", dead), ("instructme-web-live", str(os.getppid())),
                        ("instructme-web-noowner", None), ("other-dead", dead)):
        (tmp_path / name).mkdir()
        if owner is not None:
            (tmp_path / name / "owner.pid").write_text(owner + "\n")
    assert remove_stale_roots(tmp_path) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "instructme-web-live", "instructme-web-noowner", "other-dead"]


def test_spectrogram_levels_and_png(tmp_path: Path) -> None:
    from instructme.web.spectrogram import log_frequency_image, power_db, render_png

    sr = 16000
    t = np.arange(2 * sr) / sr
    x = np.sin(2 * np.pi * 1000.0 * t).astype(np.float32)  # full-scale sine
    f, _, db = power_db(x, sr)
    edges, image = log_frequency_image(f, db)
    level = image.mean(axis=1)  # [bands]
    band = int(np.searchsorted(edges, 1000.0)) - 1
    assert abs(int(level.argmax()) - band) <= 1
    assert -8.0 < level.max() < 0.0  # about -3 dBFS (half the peak power), window loss
    assert level[np.searchsorted(edges, 100.0)] < -60 and level[-1] < -60
    render_png(x, sr, tmp_path / "s.png", width_px=600, height_px=200)
    with open(tmp_path / "s.png", "rb") as fh:
        head = fh.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(head[16:20], "big") == 600 and int.from_bytes(head[20:24], "big") == 200


def test_is_loopback() -> None:
    assert all(map(is_loopback, ("127.0.0.1", "127.3.2.1", "::1", "localhost")))
    assert not any(map(is_loopback, ("0.0.0.0", "192.168.1.2", "::", "example.org")))


def test_serve_command_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from instructme.cli import main

    assert main(["serve", "--port", "70000"]) == 2
    assert "--port must be in 0..65535" in capsys.readouterr().err
    assert main(["serve", "--max-upload-mb", "0"]) == 2
    assert "--max-upload-mb must be positive" in capsys.readouterr().err
    assert main(["serve", "--model", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


def test_generated_mix_on_request(studio) -> None:
    """``preserve: false`` returns the regenerated mix (mono content) and no separate part."""
    client, _, _ = studio
    status, info = client.json("GET", "/api/info")
    assert info["defaults"]["preserve"] is True
    item = _upload_ok(client)
    status, job = client.json("POST", "/api/edit", {"audio": item["id"], "steps": 2,
                                                    "instruction": "remove the drums",
                                                    "preserve": False})
    assert status == 200, job
    job = client.wait_job(job["job"])
    assert job["state"] == "done" and job["preserve"] is False and job["part"] is None
    status, bad = client.json("POST", "/api/edit", {"audio": item["id"], "steps": 2,
                                                    "instruction": "remove the drums",
                                                    "preserve": "maybe"})
    assert status == 400 and "error" in bad


def test_split_into_stems(tmp_path: Path) -> None:
    from instructme.instructions import parse_split

    pipe = GatedPipeline(tiny_pipeline(tmp_path / "pipeline", separator=True))
    app = create_app(pipe, StudioSettings(store_root=tmp_path / "store"))
    server = start_in_thread(app)
    try:
        client = Client(server.url)
        status, info = client.json("GET", "/api/info")
        assert status == 200 and info["split"] is True
        assert all(parse_split(t) is not None for t in info["suggestions"]["split"])
        item = _upload_ok(client, 1.5, 22050)
        status, job = client.json("POST", "/api/edit", {"audio": item["id"],
                                                        "instruction": "split this into stems"})
        assert status == 200 and job["kind"] == "split", job
        job = client.wait_job(job["job"])
        assert job["state"] == "done", job["error"]
        assert job["task"] == "split" and job["result"] is None
        stems = job["stems"]
        names = [s["instrument"] for s in stems]
        assert names[-1] == "other" and len(names) >= 2
        _, _, data = client.request("GET", item["audio_url"])
        x, _ = sf.read(io.BytesIO(data))
        total = np.zeros_like(x)
        for stem in stems:
            assert stem["kind"] == "stem" and stem["parent"] == item["id"]
            assert stem["name"] == f"my clip - {stem['instrument']}.wav"
            status, headers, data = client.request("GET", stem["audio_url"] + "?download=1")
            assert status == 200 and headers["content-disposition"].startswith("attachment")
            total += sf.read(io.BytesIO(data))[0]
            status, _, png = client.request("GET", stem["spectrogram_url"])
            assert status == 200 and png[:4] == b"\x89PNG"
        np.testing.assert_allclose(total, x, atol=2e-3)  # 16-bit files sum to the source
        status, job = client.json("POST", "/api/edit", {"audio": item["id"],
                                                        "instruction": "split into drums and "
                                                                       "the rest"})
        job = client.wait_job(job["job"])
        assert {s["instrument"] for s in job["stems"]} <= {"drums", "other"}
        assert job["args"] == {"instruments": ["drums"]}
        status, body = client.json("POST", "/api/edit", {"audio": item["id"],
                                                         "instruction": "split into kazoos"})
        assert status == 400 and "kazoos" in body["error"]
    finally:
        server.stop()


def test_split_needs_a_separator(studio) -> None:
    client, _, _ = studio
    item = _upload_ok(client)
    status, info = client.json("GET", "/api/info")
    assert info["split"] is False and "split" not in info["suggestions"]
    status, body = client.json("POST", "/api/edit", {"audio": item["id"],
                                                     "instruction": "split this into stems"})
    assert status == 400 and "no stem separator" in body["error"]
