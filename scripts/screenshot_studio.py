"""Screenshot of the web studio editing a bundled example with the shipped model
(``docs/web-studio.png`` in the README), in Debian's headless Chromium::

    .venv/bin/python scripts/screenshot_studio.py [--model models/instructme-small] \
        [--example arr000-00026-country.flac] [--instruction "remove the drums"] [--out PNG]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "models" / "instructme-small"))
    ap.add_argument("--example", default="arr000-00026-country.flac")
    ap.add_argument("--instruction", default="remove the drums")
    ap.add_argument("--out", default=str(ROOT / "docs" / "web-studio.png"))
    args = ap.parse_args()

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from instructme.editing.pipeline import EditPipeline
    from instructme.web.app import StudioSettings, create_app
    from instructme.web.server import start_in_thread

    pipe = EditPipeline.from_pretrained(args.model, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:  # the edit defaults are the pipeline's
        app = create_app(pipe, StudioSettings(
            examples_dir=ROOT / "examples", model_name=Path(args.model).name,
            store_root=Path(tmp) / "store"))
        server = start_in_thread(app)
        options = webdriver.ChromeOptions()
        options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--mute-audio",
                    "--disable-dev-shm-usage", "--window-size=1280,1180",
                    f"--user-data-dir={tmp}/profile"):
            options.add_argument(arg)
        driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")
                                                  or "/usr/bin/chromedriver"), options=options)
        try:
            driver.get(server.url + "/")
            _wait(lambda: driver.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
            Select(driver.find_element(By.ID, "examples")).select_by_value(args.example)
            driver.find_element(By.ID, "load-example").click()
            _wait(lambda: _ready(driver, "source-spec"))
            box = driver.find_element(By.ID, "instruction")
            box.clear()
            box.send_keys(args.instruction)
            driver.find_element(By.ID, "run").click()
            _wait(lambda: _ready(driver, "result-spec"), timeout=300)
            time.sleep(0.5)
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(args.out)
        finally:
            driver.quit()
            server.stop()
    print(f"wrote {args.out}")


def _ready(driver, element_id: str) -> bool:
    return bool(driver.execute_script(
        "const e = document.getElementById(arguments[0]);"
        "return e && e.complete && e.naturalWidth > 0 && !e.closest('[hidden]');", element_id))


def _wait(condition, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.2)
    raise TimeoutError("the studio page did not get there in time")


if __name__ == "__main__":
    main()
