"""The web page at / in headless Chromium (Debian's `chromium` + `chromium-driver`, driven by Selenium).

CI installs them with: apt-get install -y chromium chromium-driver; pip install selenium.
"""

from __future__ import annotations

import shutil

import pytest

pytest.importorskip("fastapi")
webdriver = pytest.importorskip("selenium.webdriver")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402
from test_server_retrieval import DOCS, ScriptedLLM  # noqa: E402

from gemvec.server import ServerSettings, create_app  # noqa: E402
from gemvec.server.background import BackgroundServer  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.skipif(
        not (CHROMIUM and CHROMEDRIVER),
        reason="needs chromium and chromedriver (apt-get install chromium-driver)",
    ),
    pytest.mark.filterwarnings("ignore:dim=64"),
]
HTML_DOC = "Markup such as <b>bold</b> and <img src=x onerror=alert(1)> must show as text."


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def collection(tiny_embedder, tmp_path_factory):
    from gemvec.store import Collection

    coll = Collection.create(tmp_path_factory.mktemp("collections") / "web", embedder=tiny_embedder)
    ids = list(DOCS)
    coll.add_texts(
        [DOCS[i][1] for i in ids] + [HTML_DOC],
        ids=[*ids, "html"],
        titles=[DOCS[i][0] for i in ids] + ["Markup"],
    )
    return coll


def wait(browser, condition, timeout: float = 60):
    return WebDriverWait(browser, timeout).until(lambda d: condition(d))


def texts(browser, selector: str) -> list[str]:
    return [e.text for e in browser.find_elements(By.CSS_SELECTOR, selector)]


def search(browser, query: str, mode: str = "keyword") -> None:
    box = browser.find_element(By.ID, "search-input")
    box.clear()
    box.send_keys(query)
    Select(browser.find_element(By.ID, "search-mode")).select_by_value(mode)
    browser.find_element(By.ID, "search-button").click()


def test_search_and_ask_in_the_page(browser, tiny_embedder, collection):
    with BackgroundServer(
        create_app(tiny_embedder, collection=collection, generator=ScriptedLLM())
    ) as server:
        browser.get(server.url + "/")
        wait(browser, lambda d: "collection web" in d.find_element(By.ID, "status").text)

        search(browser, "fox")
        wait(browser, lambda d: texts(d, "#search-results .hit-title"))
        assert texts(browser, "#search-results .hit-title")[0] == "Foxes"
        assert "lazy dog" in texts(browser, "#search-results .hit-text")[0]
        assert "score" in texts(browser, "#search-results .hit-meta")[0]

        search(browser, "Markup bold")
        wait(browser, lambda d: "Markup" in texts(d, "#search-results .hit-title"))
        shown = texts(browser, "#search-results .hit-text")
        assert any("<b>bold</b>" in t for t in shown)  # shown as text, not parsed as HTML
        assert not browser.find_elements(By.CSS_SELECTOR, "#search-results b, #search-results img")

        browser.find_element(By.ID, "ask-input").send_keys("What does the fox do?")
        browser.find_element(By.ID, "ask-button").click()
        wait(browser, lambda d: d.find_element(By.ID, "answer").get_attribute("data-done") == "1")
        assert browser.find_element(By.ID, "answer").text.startswith("According to [1],")
        sources = browser.find_elements(By.CSS_SELECTOR, "#sources li.source")
        assert len(sources) >= 2
        assert "cited" in sources[0].get_attribute("class")
        assert sources[0].find_element(By.CSS_SELECTOR, ".hit-title").text.startswith("[1] ")


def test_page_asks_for_the_api_key(browser, tiny_embedder, collection):
    app = create_app(tiny_embedder, ServerSettings(api_key="page-key"), collection=collection)
    with BackgroundServer(app) as server:
        browser.get(server.url + "/")
        browser.execute_script("sessionStorage.clear()")
        browser.get(server.url + "/")
        wait(browser, lambda d: d.find_element(By.ID, "key-box").get_attribute("open") is not None)
        search(browser, "fox")
        wait(browser, lambda d: "API key" in d.find_element(By.ID, "search-error").text)
        browser.find_element(By.ID, "api-key").send_keys("page-key")
        search(browser, "fox")
        wait(browser, lambda d: texts(d, "#search-results .hit-title"))
        assert browser.find_element(By.ID, "search-error").text == ""
