"""Web studio end to end in Debian's headless Chromium (selenium + chromedriver, no download).

Uploads a clip, waits in the queue behind another edit (the page shows its position), edits
with the tiny pipeline, checks that Chromium decodes the result, chains a second round, steps
back in the history, shows errors for a bad file and an unknown instruction, splits a clip
into stems (a player, spectrogram and download each) and edits one stem further. Saves
``test-artifacts/web-studio.png`` and ``test-artifacts/web-studio-stems.png``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from web_support import Client, GatedPipeline, tiny_pipeline, write_wav

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

pytestmark = pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
    reason="Debian's chromium and chromium-driver are not installed (scripts/setup.sh "
           "installs them)")


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory):
    from instructme.web.app import StudioSettings, create_app
    from instructme.web.server import start_in_thread

    root = tmp_path_factory.mktemp("browser")
    pipe = GatedPipeline(tiny_pipeline(root / "pipeline", steps=4, separator=True))
    examples = root / "examples"
    examples.mkdir()
    write_wav(examples / "example-chords.wav", 2.0)
    app = create_app(pipe, StudioSettings(max_upload_mb=1.0, max_seconds=10.0,
                                          examples_dir=examples,
                                          model_name="tiny test pipeline (untrained)",
                                          store_root=root / "store"))
    server = start_in_thread(app)
    yield server.url, pipe, root
    server.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--mute-audio", "--window-size=1280,1180",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _wait(driver, condition, timeout: float = 30.0, what: str = "condition"):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(
        lambda d: condition(d), message=f"timed out waiting for {what}")


def _js(driver, script: str, *args):
    return driver.execute_script(script, *args)


def _media_ready(driver, element_id: str) -> bool:
    return bool(_js(driver, "const m = document.getElementById(arguments[0]);"
                            "return !m.hidden && m.readyState >= 1 && m.duration > 0;",
                    element_id))


def _image_ready(driver, element_id: str) -> bool:
    return bool(_js(driver, "const i = document.getElementById(arguments[0]);"
                            "return !i.hidden && i.complete && i.naturalWidth > 0;", element_id))


def test_studio_in_chromium(studio, browser, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    url, pipe, _ = studio
    driver = browser
    driver.get(url + "/")
    _wait(driver, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"),
          what="the page to load /api/info")
    assert driver.find_element(By.ID, "model").text == "tiny test pipeline (untrained)"
    assert Select(driver.find_element(By.ID, "examples")).first_selected_option.get_attribute(
        "value") == "example-chords.wav"

    # Upload a clip: the source player and spectrogram appear.
    clip = write_wav(tmp_path / "my-song.wav", 1.5, 22050)
    driver.find_element(By.ID, "file").send_keys(str(clip))
    _wait(driver, lambda d: _media_ready(d, "source-audio") and _image_ready(d, "source-spec"),
          what="the uploaded clip")
    assert "my-song.wav" in driver.find_element(By.ID, "source-name").text

    # Pick a suggestion, then run while another edit holds the worker: the page shows its
    # place in the queue, then the sampler's progress, then the result.
    Select(driver.find_element(By.ID, "task")).select_by_value("remove")
    driver.find_elements(By.CSS_SELECTOR, "#suggestions .suggestion")[0].click()
    instruction = driver.find_element(By.ID, "instruction").get_attribute("value")
    assert instruction == "remove the drums"
    item_id = _js(driver, "return document.getElementById('source-audio').src.split('/').pop()")
    pipe.gate.clear()
    try:
        status, other = Client(url).json("POST", "/api/edit", {
            "audio": item_id, "instruction": "add a piano", "steps": 2})
        assert status == 200, other
        driver.find_element(By.ID, "run").click()
        _wait(driver, lambda d: "position 1 (1 edit ahead)" in d.find_element(By.ID,
                                                                              "status").text,
              what="the queue position")
    finally:
        pipe.gate.set()
    _wait(driver, lambda d: _media_ready(d, "result-audio") and _image_ready(d, "result-spec"),
          what="the result player")
    duration = _js(driver, "return document.getElementById('result-audio').duration")
    assert duration == pytest.approx(1.5, abs=0.01)
    assert "remove drums" in driver.find_element(By.ID, "result-info").text
    assert driver.find_element(By.ID, "status").text.startswith("Done: remove drums")
    href = driver.find_element(By.ID, "download").get_attribute("href")
    assert href.endswith("?download=1")
    ARTIFACTS.mkdir(exist_ok=True)
    assert driver.save_screenshot(str(ARTIFACTS / "web-studio.png"))

    # Chain a second round on the result, then step back to the first source.
    driver.find_element(By.ID, "chain").click()
    box = driver.find_element(By.ID, "instruction")
    box.send_keys("add a piano")
    driver.find_element(By.ID, "run").click()
    _wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#history li")) == 3
          and _media_ready(d, "result-audio"), what="the second round")
    rounds = [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#history li")]
    assert rounds[0].startswith("source: my-song.wav")
    assert "remove the drums" in rounds[1] and "add a piano" in rounds[2]
    assert "current" in driver.find_elements(By.CSS_SELECTOR, "#history li")[1].get_attribute(
        "class")
    driver.find_elements(By.CSS_SELECTOR, "#history li button")[0].click()
    _wait(driver, lambda d: "current" in d.find_elements(By.CSS_SELECTOR, "#history li")[0]
          .get_attribute("class"), what="stepping back")
    assert "my-song.wav" in driver.find_element(By.ID, "source-name").text

    # Errors show in the page: an unknown instruction, then a file that is not audio.
    box.clear()
    box.send_keys("wibble wobble")
    driver.find_element(By.ID, "run").click()
    _wait(driver, lambda d: d.find_element(By.ID, "error").is_displayed(), what="an error")
    assert "could not understand" in driver.find_element(By.ID, "error").text
    bad = tmp_path / "notes.wav"
    bad.write_text("definitely not audio\n" * 50)
    driver.find_element(By.ID, "file").send_keys(str(bad))
    _wait(driver, lambda d: "not a readable audio file" in d.find_element(By.ID, "error").text,
          what="the bad upload error")
    assert "notes.wav" in driver.find_element(By.ID, "error").text
    assert "my-song.wav" in driver.find_element(By.ID, "source-name").text  # source kept

    # A bundled example loads by name.
    driver.find_element(By.ID, "load-example").click()
    _wait(driver, lambda d: "example-chords.wav" in d.find_element(By.ID, "source-name").text,
          what="the example")
    assert not driver.find_element(By.ID, "error").is_displayed()

    # Split into stems: one player, spectrogram and download per stem; then edit one.
    box.clear()
    box.send_keys("split this into stems")
    driver.find_element(By.ID, "run").click()
    ready = ("const f = [...document.querySelectorAll('#stems figure')];"
             "return f.length >= 2 && f.every(x => x.querySelector('audio').readyState >= 1"
             " && x.querySelector('img').complete && x.querySelector('img').naturalWidth > 0);")
    _wait(driver, lambda d: _js(d, ready), what="the stems")
    figures = driver.find_elements(By.CSS_SELECTOR, "#stems figure")
    names = [f.get_attribute("data-instrument") for f in figures]
    assert names[-1] == "other"
    links = [f.find_element(By.CSS_SELECTOR, "a.button").get_attribute("href") for f in figures]
    assert all(h.endswith("?download=1") for h in links)
    assert "sum to the source" in driver.find_element(By.ID, "stems-info").text
    assert driver.save_screenshot(str(ARTIFACTS / "web-studio-stems.png"))
    figures[0].find_element(By.TAG_NAME, "button").click()
    _wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#history li")) == 2,
          what="the stem as a round")
    assert f"stem: {names[0]}" in driver.find_elements(By.CSS_SELECTOR, "#history li")[1].text
    assert not driver.find_element(By.ID, "stems-section").is_displayed()
