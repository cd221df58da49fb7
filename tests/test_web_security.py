"""What the studio refuses (a real server on a free loopback port): foreign Host names (DNS
rebinding), writes from other sites' pages, oversized bodies, audio that decodes too large, and
more clips than it may hold."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from web_support import Client, GatedPipeline, multipart, tiny_pipeline, wav_bytes, write_wav

from instructme.web.app import StudioSettings, create_app
from instructme.web.guard import check_host_pattern, served_hosts
from instructme.web.server import start_in_thread


@pytest.fixture(scope="module")
def pipe(tmp_path_factory: pytest.TempPathFactory) -> GatedPipeline:
    return GatedPipeline(tiny_pipeline(tmp_path_factory.mktemp("pipeline")))


@pytest.fixture(scope="module")
def studio(pipe: GatedPipeline, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("security")
    (root / "examples").mkdir()
    write_wav(root / "examples" / "chords.wav", 1.0)
    app = create_app(pipe, StudioSettings(examples_dir=root / "examples",
                                          store_root=root / "store",
                                          extra_hosts=("studio.example.org",)))
    server = start_in_thread(app)
    yield Client(server.url), app
    server.stop()


def _upload(client: Client, headers: dict[str, str] | None = None,
            data: bytes | None = None, name: str = "a.wav") -> tuple[int, dict]:
    body, ctype = multipart(data if data is not None else wav_bytes(0.5), name)
    status, _, out = client.request("POST", "/api/upload", body,
                                    {"Content-Type": ctype, **(headers or {})})
    return status, json.loads(out)


def test_foreign_host_names_are_refused(studio) -> None:
    client, _ = studio
    status, item = _upload(client)
    assert status == 200, item
    port = client.port
    for path in ("/api/info", item["audio_url"], "/"):
        for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example", ""):
            status, _, out = client.request("GET", path, headers={"Host": host})
            assert status == 400, (path, host, status)
            assert b"RIFF" not in out and "not served here" in json.loads(out)["error"]
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}",
                     "[::1]", "studio.example.org"):
            status, _, _ = client.request("GET", path, headers={"Host": host})
            assert status == 200, (path, host)


def test_cross_site_writes_are_refused(studio) -> None:
    client, app = studio
    port = client.port
    before = len(app.state.store)
    foreign = [{"Origin": "http://evil.example"}, {"Origin": "null"},
               {"Origin": f"http://localhost:{port + 1}"},  # another local site
               {"Origin": "https://127.0.0.1"},
               {"Referer": "http://evil.example/page.html"},
               {"Origin": "http://evil.example", "Referer": f"http://127.0.0.1:{port}/"}]
    for headers in foreign:
        status, err = _upload(client, headers)
        assert status == 403, headers
        assert "another site" in err["error"] and "\n" not in err["error"]
        for path in ("/api/examples/chords.wav", "/api/edit"):
            status, _, out = client.request("POST", path, b"{}", {
                "Content-Type": "application/json", **headers})
            assert status == 403 and "another site" in json.loads(out)["error"], path
    assert len(app.state.store) == before
    own = [{}, {"Origin": f"http://127.0.0.1:{port}"},
           {"Referer": f"http://127.0.0.1:{port}/"},
           {"Origin": f"http://localhost:{port}", "Host": f"localhost:{port}"},
           {"Origin": "https://studio.example.org", "Host": f"127.0.0.1:{port}"}]
    for headers in own:
        status, item = _upload(client, headers)
        assert status == 200, (headers, item)
    # Reading from another page's fetch is the browser's same-origin business: allowed.
    status, _, _ = client.request("GET", "/api/info", headers={"Origin": "http://evil.example"})
    assert status == 200


def test_host_names_of_a_server() -> None:
    assert served_hosts("127.0.0.1") == ["127.0.0.1", "localhost", "[::1]"]
    assert served_hosts("0.0.0.0", ["Studio.Example.org", "::1", "*.lan"]) == [
        "127.0.0.1", "localhost", "[::1]", "studio.example.org", "*.lan"]
    assert served_hosts("192.168.1.5")[-1] == "192.168.1.5"
    assert served_hosts("fe80::1")[-1] == "[fe80::1]"
    for bad in ("*", "evil.example:80", "a/b", "x.*.org", "user@host", ""):
        with pytest.raises(ValueError):
            check_host_pattern(bad)


def test_serve_refuses_a_bad_allowed_host(capsys: pytest.CaptureFixture[str]) -> None:
    from instructme.cli import main

    assert main(["serve", "--allowed-host", "*", "--demo"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --allowed-host: not a host name") and err.count("\n") == 1


def test_request_bodies_are_capped(studio) -> None:
    client, _ = studio
    status, item = _upload(client)
    # A declared 300 MB body is refused before it is read (only 2 bytes are sent).
    status, _, out = client.request("POST", "/api/edit", b"{}", {
        "Content-Type": "application/json", "Content-Length": str(300_000_000)})
    assert status == 413 and "at most 64 KiB" in json.loads(out)["error"]
    # Without a Content-Length (chunked), it is cut off as it streams.
    big = json.dumps({"audio": item["id"], "instruction": "add a piano",
                      "pad": "x" * 200_000}).encode()
    status, _, out = client.request("POST", "/api/edit", big,
                                    {"Content-Type": "application/json"}, chunked=True)
    assert status == 413 and "too large" in json.loads(out)["error"]
    status, _, out = client.request("POST", "/api/examples/chords.wav", b"x" * 100_000,
                                    {"Content-Type": "application/octet-stream"})
    assert status == 413
    status, job = client.json("POST", "/api/edit", {"audio": item["id"], "steps": 1,
                                                    "instruction": "add a piano"})
    assert status == 200, job  # an ordinary edit request still passes
    client.wait_job(job["job"])


def _flac(seconds: float, sample_rate: int, channels: int) -> bytes:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    x = np.stack([0.1 * (c + 1) * np.sin(2 * np.pi * 440.0 * t) for c in range(channels)], 1)
    buf = io.BytesIO()
    sf.write(buf, x.astype(np.float32), sample_rate, format="FLAC")
    return buf.getvalue()


def test_audio_that_decodes_too_large_is_refused_from_its_header(pipe: GatedPipeline,
                                                                  tmp_path: Path) -> None:
    app = create_app(pipe, StudioSettings(max_decoded_mb=1.0, store_root=tmp_path / "store"))
    server = start_in_thread(app)
    client = Client(server.url)
    try:
        data = _flac(1.0, 48000, 8)  # 8 x 48,000 float32 samples: 1.5 MB decoded
        assert len(data) < 200_000
        status, err = _upload(client, data=data, name="wide.flac")
        assert status == 400, err
        assert err["error"] == ("wide.flac: 8 channels at 48000 Hz for 1.0 s decode to 2 MB; "
                                "this server decodes at most 1 MB per file")
        assert len(app.state.store) == 0
        # A stereo clip that fits is decoded block by block to the channels' mean.
        data = _flac(1.0, 44100, 2)
        status, item = _upload(client, data=data, name="stereo.flac")
        assert status == 200, item
        _, _, wav = client.request("GET", item["audio_url"])
        y, sr = sf.read(io.BytesIO(wav))
        x, _ = sf.read(io.BytesIO(data), dtype="float32")
        assert sr == 44100 and y.shape == (44100,)
        np.testing.assert_allclose(y, x.mean(axis=1), atol=1.0 / 32768)
    finally:
        server.stop()


def test_clip_count_and_bytes_are_capped(pipe: GatedPipeline, tmp_path: Path) -> None:
    app = create_app(pipe, StudioSettings(max_clips=3, store_root=tmp_path / "store"))
    server = start_in_thread(app)
    client = Client(server.url)
    pipe.gate.clear()
    try:
        items = [_upload(client)[1] for _ in range(5)]
        assert len(app.state.store) == 3
        codes = [client.request("GET", i["audio_url"])[0] for i in items]
        assert codes == [404, 404, 200, 200, 200]  # the least recently used went first
        busy = items[2]
        status, job = client.json("POST", "/api/edit", {"audio": busy["id"], "steps": 1,
                                                        "instruction": "add a piano"})
        assert status == 200, job
        for _ in range(3):
            assert _upload(client)[0] == 200
        assert client.request("GET", busy["audio_url"])[0] == 200  # an edit needs it
        app.state.store.max_clips = 1
        status, err = _upload(client)
        assert status == 507 and "edits still use" in err["error"]
    finally:
        pipe.gate.set()
    client.wait_job(job["job"])
    server.stop()
    store = create_app(pipe, StudioSettings(max_store_mb=0.05, store_root=tmp_path / "s2"))
    try:
        store = store.state.store
        for k in range(4):  # 16 kB each: three fit in 50 kB
            store.add_array(np.zeros(8000, np.float32), 16000, f"{k}.wav", "upload")
        assert len(store) == 3
        assert sum(i.size for i in store._items.values()) <= 50_000
    finally:
        store.close()


def test_stopping_cancels_the_running_edit(pipe: GatedPipeline, tmp_path: Path) -> None:
    app = create_app(pipe.pipe, StudioSettings(max_steps=500, store_root=tmp_path / "store"))
    server = start_in_thread(app)
    client = Client(server.url)
    status, item = _upload(client)
    status, job = client.json("POST", "/api/edit", {"audio": item["id"], "steps": 500,
                                                    "instruction": "add a piano"})
    deadline = time.monotonic() + 60
    while client.json("GET", f"/api/jobs/{job['job']}")[1]["step"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    worker = app.state.worker
    t0 = time.monotonic()
    server.stop(timeout=60)
    assert not worker._thread.is_alive() and time.monotonic() - t0 < 30
    assert worker._jobs[job["job"]].error == "the studio shut down during this edit"
    assert not (tmp_path / "store").exists()
