"""``proxy_for``: which proxy, if any, the standard variables give for the Azure endpoint."""

from __future__ import annotations

import pytest

from worker.analysis.azure import proxy_for

ENDPOINT = "https://my-vision.cognitiveservices.azure.com"
PROXY = "http://proxy.corp:3128"


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"HTTPS_PROXY": PROXY}, PROXY),
        ({"https_proxy": PROXY, "HTTPS_PROXY": "http://other:1"}, PROXY),  # lower case first, as curl
        ({"HTTP_PROXY": PROXY}, None),  # an https endpoint only takes the https proxy
        ({"HTTPS_PROXY": ""}, None),
        ({"HTTPS_PROXY": PROXY, "NO_PROXY": "*"}, None),
        ({"HTTPS_PROXY": PROXY, "NO_PROXY": "localhost,.azure.com"}, None),
        ({"HTTPS_PROXY": PROXY, "no_proxy": "cognitiveservices.azure.com"}, None),  # and its subdomains
        ({"HTTPS_PROXY": PROXY, "NO_PROXY": "my-vision.cognitiveservices.azure.com"}, None),
        ({"HTTPS_PROXY": PROXY, "NO_PROXY": "other.azure.net,localhost"}, PROXY),
        ({"HTTPS_PROXY": PROXY, "NO_PROXY": "vision.cognitiveservices.azure.com"}, PROXY),  # label boundary
    ],
)
def test_proxy_for_an_https_endpoint(environ: dict[str, str], expected: str | None) -> None:
    assert expected == proxy_for(ENDPOINT, environ)


def test_an_http_endpoint_takes_the_http_proxy_and_no_proxy_may_name_its_port() -> None:
    endpoint = "http://127.0.0.1:8080"
    assert PROXY == proxy_for(endpoint, {"HTTP_PROXY": PROXY, "HTTPS_PROXY": "http://other:1"})
    assert None is proxy_for(endpoint, {"HTTP_PROXY": PROXY, "NO_PROXY": "127.0.0.1:8080"})
    assert None is proxy_for(endpoint, {"HTTP_PROXY": PROXY, "NO_PROXY": "127.0.0.1"})
