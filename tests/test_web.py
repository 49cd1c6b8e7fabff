"""The web surface in a real headless browser: Debian's chromium through chromedriver (Selenium),
against the real server on 127.0.0.1 with a real store, bus and OSC over UDP.

The engine's figures come from a clock the test holds still, so the playhead's place on the
timeline is known and its pixels can be checked. ``RIFFENGINE_SCREENSHOT=docs/web-surface.png``
also saves the screenshot for the README.
"""

from __future__ import annotations

import io
import os
import socket
from pathlib import Path

import pytest
from PIL import Image
from surface_fixtures import OscClient, RunningSurfaces, wait_until

from riffengine.config import load_config

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
pytestmark = pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
    reason="Debian's chromium and chromium-driver are not installed",
)

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

RATE = 44100
SEEDS = Path(__file__).resolve().parents[1] / "riffengine" / "seeds"
RED, BLUE = (230, 30, 40), (30, 60, 230)


class Clock:
    """Engine figures with a heard frame the test sets."""

    def __init__(self) -> None:
        self.frame = RATE  # one second in

    def __call__(self) -> dict:
        return {
            "frame": self.frame,
            "bar": 0,
            "beat": 3,
            "bpm": 120.0,
            "beats_per_bar": 4,
            "sample_rate": RATE,
            "render_ms": 850.0,
            "loops_ahead": 1,
            "next_change_bar": 2,
            "next_change_in_s": 3.0,
            "underruns": 0,
            "render_failures": 0,
            "output_lost": 0,
        }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def settings(tmp_path, port: int, alpha: float):
    path = tmp_path / f"web-{alpha}.yaml"
    path.write_text(
        f"osc: {{port: 0}}\nhttp: {{enabled: true, port: {port}}}\n"
        f"paths: {{spectrograms: spectrograms, scenes: scenes}}\ninitial: {{alpha: {alpha}}}\n"
        "scenes: {verse: {alpha: 0.1}, chorus: {alpha: 0.9}}\n"
    )
    return load_config(path)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("chromium")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        "--window-size=1200,900",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(arg)
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()  # stops chromedriver and the browser it started


def control(driver, path: str):
    return driver.find_element(By.CSS_SELECTOR, f'[data-path="{path}"]')


def value_of(driver, path: str) -> str:
    return driver.execute_script("return arguments[0].value", control(driver, path))


def connected(driver) -> bool:
    return driver.execute_script(
        "return document.body.dataset.connected === '1' && !!document.querySelector('[data-path=\"/riff/alpha\"]')"
    )


def pixel(driver, seconds_ahead: float) -> tuple[int, int, int]:
    """The timeline's colour ``seconds_ahead`` of the playhead, halfway down."""
    return tuple(
        driver.execute_script(
            "const c = document.getElementById('timeline');"
            "const x = Math.round(Number(c.dataset.playheadX) + arguments[0] * Number(c.dataset.pxPerSecond));"
            "return Array.from(c.getContext('2d').getImageData(x, c.height / 2, 1, 1).data).slice(0, 3);",
            seconds_ahead,
        )
    )


def near(colour, target, tolerance: int = 40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(colour, target))


def publish_loop(engine, kind: str, clip_id: str, frame: int, image: Image.Image, bar: int) -> None:
    engine.call(
        engine.bus.publish,
        kind,
        clip_id=clip_id,
        frame=frame,
        frames=4 * RATE,
        bar=bar,
        bpm=120.0,
        bars=2,
        repeat=0,
        index=1,
        image=image,
    )


def test_page_controls_engine_follows_osc_draws_timeline_and_survives_a_restart(tmp_path, browser):
    port = free_port()
    clock = Clock()
    with RunningSurfaces(settings(tmp_path, port, 0.0), figures=clock) as engine:
        browser.get(f"http://127.0.0.1:{port}/ui/")
        wait_until(lambda: connected(browser), what="the page to connect")
        # every parameter of the table has a control, generated from the namespace
        for name in ("alpha", "bpm", "steps", "scheduler", "gain", "scene"):
            assert browser.find_element(By.CSS_SELECTOR, f'fieldset[data-name="{name}"]')
        assert control(browser, "/riff/prompt_a/3").get_attribute("type") == "text"
        assert control(browser, "/riff/scheduler").tag_name == "select"

        # moving the alpha fader changes the engine's state
        control(browser, "/riff/alpha").send_keys(Keys.END)
        wait_until(lambda: engine.values["alpha"] == 1.0, what="alpha from the page")
        assert any(src.startswith("web 127.0.0.1:") for key, _, src in engine.changes if key == "alpha")

        # an OSC change made elsewhere appears on the page
        with OscClient(engine.osc_port) as client:
            client.send("/riff/alpha", 0.25)
            client.send("/riff/scheduler", "euler")
            client.send("/riff/prompt_b/1", "marimba")
        wait_until(lambda: value_of(browser, "/riff/alpha") == "0.25", what="alpha on the page")
        wait_until(lambda: value_of(browser, "/riff/scheduler") == "euler", what="scheduler on the page")
        wait_until(lambda: value_of(browser, "/riff/prompt_b/1") == "marimba", what="prompt on the page")

        # the timeline: the playing loop's image at the playhead, the next one where it lands
        publish_loop(engine, "loop_started", "clip1-v0", 0, Image.new("RGB", (512, 512), RED), 0)
        publish_loop(engine, "loop_scheduled", "clip2-v1", 4 * RATE, Image.new("RGB", (512, 512), BLUE), 2)
        wait_until(lambda: near(pixel(browser, 0.1), RED), what="the playing loop at the playhead")
        wait_until(lambda: near(pixel(browser, 3.5), BLUE), what="the next loop at its bar")
        assert near(pixel(browser, 1.5), RED) and not near(pixel(browser, -1.5), RED)
        clock.frame = 5 * RATE  # the engine is heard further on: the next loop is at the playhead
        wait_until(lambda: near(pixel(browser, 0.1), BLUE), what="the playhead to follow the frame clock")

        # a screenshot with real spectrograms (the built-in seed loops)
        clock.frame = RATE
        publish_loop(engine, "loop_started", "seed-groove", 0, Image.open(SEEDS / "groove_94.png"), 0)
        publish_loop(engine, "loop_scheduled", "seed-house", 4 * RATE, Image.open(SEEDS / "house_120.png"), 2)
        wait_until(
            lambda: (
                not near(pixel(browser, 0.1), RED)
                and not near(pixel(browser, 0.1), (17, 17, 17), 3)
                and not near(pixel(browser, 3.5), BLUE)
            ),
            what="the seed loops drawn",
        )
        shot = browser.get_screenshot_as_png()
        assert Image.open(io.BytesIO(shot)).size[0] > 600
        target = os.environ.get("RIFFENGINE_SCREENSHOT")
        if target:
            Path(target).write_bytes(shot)

    # the engine goes away and comes back on the same port: the page reconnects by itself
    wait_until(lambda: not connected(browser), what="the page to notice the engine is gone")
    with RunningSurfaces(settings(tmp_path, port, 0.5), figures=clock) as engine:
        wait_until(lambda: connected(browser), timeout=20, what="the page to reconnect")
        wait_until(lambda: value_of(browser, "/riff/alpha") == "0.5", what="the new engine's alpha")
        control(browser, "/riff/alpha").send_keys(Keys.HOME)
        wait_until(lambda: engine.values["alpha"] == 0.0, what="alpha from the page after the restart")


def test_two_browsers_stay_in_step(tmp_path, browser):
    port = free_port()
    with RunningSurfaces(settings(tmp_path, port, 0.0), figures=Clock()) as engine:
        browser.get(f"http://127.0.0.1:{port}/ui/")
        wait_until(lambda: connected(browser), what="the first page")
        first = browser.current_window_handle
        browser.switch_to.new_window("tab")
        browser.get(f"http://127.0.0.1:{port}/ui/")
        wait_until(lambda: connected(browser), what="the second page")
        wait_until(lambda: len(engine.surfaces.web.clients) == 2, what="two clients")
        control(browser, "/riff/gain").send_keys(Keys.END)  # the second page moves the gain
        wait_until(lambda: engine.values["gain"] == 12.0, what="gain from the second page")
        browser.switch_to.window(first)
        wait_until(lambda: value_of(browser, "/riff/gain") == "12", what="the first page in step")


def test_seed_picker_and_scene_recall(tmp_path, browser):
    port = free_port()
    with RunningSurfaces(settings(tmp_path, port, 0.0), figures=Clock()) as engine:
        browser.get(f"http://127.0.0.1:{port}/ui/")
        wait_until(lambda: connected(browser), what="the page")
        thumb = wait_until(
            lambda: browser.find_elements(
                By.CSS_SELECTOR, '[data-picker="/riff/seed_image"] img[data-value="house_120"]'
            ),
            what="thumbnails",
        )[0]
        wait_until(
            lambda: browser.execute_script("return arguments[0].naturalWidth", thumb) == 512, what="the thumbnail image"
        )
        thumb.click()
        wait_until(lambda: engine.values["seed_image"] == "house_120", what="the seed from the picker")
        wait_until(lambda: "chosen" in thumb.get_attribute("class"), what="the chosen thumbnail")
        scene = control(browser, "/riff/scene")
        scene.clear()
        scene.send_keys("1")
        browser.find_element(By.CSS_SELECTOR, '[data-action="/riff/scene"]').click()
        wait_until(
            lambda: engine.values["alpha"] == 0.9 and engine.values["scene"] == 1, what="scene 1 (chorus) recalled"
        )
        control(browser, "/riff/scene_save").send_keys("from the page")
        browser.find_element(By.CSS_SELECTOR, '[data-action="/riff/scene_save"]').click()
        saved = tmp_path / "scenes" / "from the page.yaml"
        wait_until(saved.exists, what="the scene saved from the page")
        assert "alpha: 0.9" in saved.read_text()
        assert engine.surfaces.controls.scenes.names == ["verse", "chorus", "from the page"]
        browser.set_window_size(390, 844)  # a phone: one column, nothing wider than the screen
        wait_until(
            lambda: browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth"),
            what="a phone-wide page",
        )
        left = browser.execute_script(
            "return Array.from(document.querySelectorAll('fieldset.param'))"
            ".slice(0, 3).map(f => f.getBoundingClientRect().left)"
        )
        assert len(set(left)) == 1
        browser.set_window_size(1200, 900)
