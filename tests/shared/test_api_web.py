"""The people's page is served from package data with exact content types, caching and its own CSP."""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from anime_recommender.api.web import PAGE_CSP, load_web_assets, mount_web


@pytest.fixture(scope="module")
def client() -> TestClient:
    app = FastAPI()
    mount_web(app)
    return TestClient(app)


def test_page_is_served_with_its_csp_and_revalidation(client: TestClient) -> None:
    # When the page is requested
    response = client.get("/")
    # Then it is the HTML page, with exactly the page's CSP, and always revalidated
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["content-security-policy"] == PAGE_CSP
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert '<input id="title-input"' in response.text
    # and no inline script or style would need a CSP exception
    assert not re.search(r"<script(?![^>]*\bsrc=)", response.text)
    assert "<style" not in response.text
    assert " style=" not in response.text
    assert re.search(r"\son[a-z]+=", response.text) is None


def test_page_links_versioned_static_files_that_are_immutable(client: TestClient) -> None:
    page = client.get("/").text
    links = re.findall(r'"static/([a-z]+\.(?:js|css|svg))\?v=([0-9a-f]{20})"', page)
    assert {name for name, _ in links} == {"app.js", "styles.css", "favicon.svg"}
    types = {"js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8", "svg": "image/svg+xml"}
    for name, version in links:
        response = client.get(f"/static/{name}?v={version}")
        assert response.status_code == 200
        assert response.headers["content-type"] == types[name.rsplit(".", 1)[1]]
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert response.headers["etag"] == f'"{version}"'
        # A stale or missing version must not be cached for a year.
        assert client.get(f"/static/{name}?v=0").headers["cache-control"] == "no-cache"


def test_etag_answers_304_without_a_body(client: TestClient) -> None:
    etag = client.get("/static/app.js").headers["etag"]
    response = client.get("/static/app.js", headers={"If-None-Match": f'W/"other", {etag}'})
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == etag
    assert client.get("/static/app.js", headers={"If-None-Match": '"other"'}).status_code == 200


def test_head_is_answered(client: TestClient) -> None:
    response = client.head("/static/styles.css")
    assert response.status_code == 200
    assert int(response.headers["content-length"]) > 1000


@pytest.mark.parametrize(
    "path",
    ["/static/missing.js", "/static/index.html", "/static/..%2Fweb.py", "/static/", "/static/app.js/x"],
)
def test_unknown_static_files_are_404(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 404


def test_assets_are_read_once_with_content_hashes() -> None:
    assets = load_web_assets()
    assert {"index.html", "app.js", "styles.css", "favicon.svg"} <= set(assets)
    for asset in assets.values():
        assert re.fullmatch(r'"[0-9a-f]{20}"', asset.etag)
    # The served index references the files by their current hashes.
    index = assets["index.html"].body.decode()
    assert f"static/app.js?v={assets['app.js'].etag.strip(chr(34))}" in index


def test_missing_package_folder_fails_loudly() -> None:
    with pytest.raises(FileNotFoundError):
        load_web_assets(folder="no-such-folder")
