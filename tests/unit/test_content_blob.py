"""The pure parts of the identity blob read: which URLs get the identity, what of a URL is sent, what an
Azure SDK error becomes, and the settings that turn it on."""

from __future__ import annotations

import pytest
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from worker.content.blob import BlobOrWebFetcher, account_hosts, is_account_url, refusal_for, without_sas
from worker.content.fetch import FetchedImage, FetchRefusal
from worker.errors import ConfigurationError
from worker.settings import Settings

HOSTS = account_hosts(["Photos.blob.core.windows.net.", "archive.blob.core.windows.net"])


def test_account_hosts_are_compared_in_lower_case_without_the_trailing_dot() -> None:
    """The allowlist is normalised once, as hosts are when compared."""
    assert frozenset({"photos.blob.core.windows.net", "archive.blob.core.windows.net"}) == HOSTS


@pytest.mark.parametrize(
    "entry",
    [
        "*.blob.core.windows.net",
        "https://photos.blob.core.windows.net",
        "photos.blob.core.windows.net:443",
        "photos.blob.core.windows.net/c",
        "",
        "user@photos.blob.core.windows.net",
    ],
)
def test_an_allowlist_entry_that_is_not_a_bare_host_name_is_refused(entry: str) -> None:
    """A pattern would send the token to any account; a scheme, port or path is a misunderstanding."""
    with pytest.raises(ValueError, match="not a storage account host name"):
        account_hosts([entry])


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://photos.blob.core.windows.net/c/a.jpg", True),
        ("https://PHOTOS.blob.core.windows.net./c/a.jpg?sv=1&sig=x", True),
        ("https://photos.blob.core.windows.net:10000/c/a.jpg", True),
        ("http://photos.blob.core.windows.net/c/a.jpg", False),
        ("https://evil.blob.core.windows.net/c/a.jpg", False),
        ("https://photos.blob.core.windows.net.evil.test/c/a.jpg", False),
        ("https://evil.test/photos.blob.core.windows.net/a.jpg", False),
        ("https://photos.blob.core.windows.net@evil.test/c/a.jpg", False),
        ("https://u:p@photos.blob.core.windows.net/c/a.jpg", False),
        ("https://photos.blob.core.windows.net:bad/c/a.jpg", False),
    ],
)
def test_only_https_urls_on_an_allowed_host_are_read_with_the_identity(url: str, expected: bool) -> None:
    """Host equality after normalisation, never a substring or suffix; userinfo or http never qualify."""
    assert expected == is_account_url(url, HOSTS)


def test_a_sas_and_any_other_query_are_dropped_but_the_snapshot_is_kept() -> None:
    """The identity is the read's only authority: nothing of a SAS is sent along."""
    url = "https://photos.blob.core.windows.net/c/a.jpg?sv=2024-01-01&sig=c2VjcmV0&snapshot=2026-01-01T00%3A00%3A00Z&x=1#f"
    expected = "https://photos.blob.core.windows.net/c/a.jpg?snapshot=2026-01-01T00%3A00%3A00Z"
    assert expected == without_sas(url)


def test_a_url_without_a_query_is_unchanged() -> None:
    """Nothing to drop."""
    url = "https://photos.blob.core.windows.net/c/dir/a%20b.jpg"
    assert url == without_sas(url)


def _status(error_type: type[HttpResponseError], status: int) -> HttpResponseError:
    error = error_type(message="said")
    error.status_code = status
    return error


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ResourceNotFoundError(message="BlobNotFound"), FetchRefusal.NOT_FOUND),
        (ClientAuthenticationError(message="no identity"), FetchRefusal.FORBIDDEN),
        (_status(HttpResponseError, 403), FetchRefusal.FORBIDDEN),
        (_status(HttpResponseError, 401), FetchRefusal.FORBIDDEN),
        (_status(HttpResponseError, 404), FetchRefusal.NOT_FOUND),
        (_status(ResourceModifiedError, 412), FetchRefusal.HTTP_STATUS),
        (_status(ResourceExistsError, 409), FetchRefusal.HTTP_STATUS),
        (_status(HttpResponseError, 503), FetchRefusal.HTTP_STATUS),
        (ServiceRequestError(message="refused"), FetchRefusal.CONNECTION_FAILED),
        (ServiceResponseError(message="reset"), FetchRefusal.CONNECTION_FAILED),
        (AzureError(message="other"), FetchRefusal.CONNECTION_FAILED),
    ],
)
def test_each_storage_error_becomes_its_fetch_refusal(error: AzureError, expected: FetchRefusal) -> None:
    """Missing is ``not_found``, a refused or unobtainable token ``forbidden``, no answer a connection."""
    assert expected == refusal_for(error)


class Recording:
    """A fetcher that records the URLs it was asked for."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.urls: list[str] = []
        self.closed = False

    async def fetch(self, url: str) -> FetchedImage:
        self.urls.append(url)
        return FetchedImage(self.name.encode(), "image/jpeg")

    async def aclose(self) -> None:
        self.closed = True


async def test_the_dispatch_sends_account_urls_to_the_blob_reader_and_the_rest_to_the_web() -> None:
    """A look-alike host goes through the guarded web fetch; both fetchers are closed together."""
    blob, web = Recording("blob"), Recording("web")
    fetcher = BlobOrWebFetcher(blob, web, HOSTS)
    own = "https://photos.blob.core.windows.net/c/a.jpg"
    other = "https://photos.blob.core.windows.net.evil.test/c/a.jpg"
    fetched = [await fetcher.fetch(own), await fetcher.fetch(other)]
    await fetcher.aclose()
    assert ([b"blob", b"web"], [own], [other], True, True) == (
        [image.data for image in fetched],
        blob.urls,
        web.urls,
        blob.closed,
        web.closed,
    )


def _settings(**values: str) -> Settings:
    environ = {
        "MODERATION_ANALYZER": "azure",
        "MODERATION_AZURE_ENDPOINT": "https://v.test",
        "MODERATION_AZURE_KEY": "k",
    }
    return Settings.from_env(environ | {f"MODERATION_{name}": value for name, value in values.items()})


def test_blob_auth_reads_the_account_hosts_as_a_list() -> None:
    """``MODERATION_BLOB_ACCOUNT_HOSTS`` is comma-separated."""
    settings = _settings(
        IMAGE_FETCH="worker",
        BLOB_AUTH="entra",
        BLOB_ACCOUNT_HOSTS="a.blob.core.windows.net, b.blob.core.windows.net",
    )
    assert ("entra", ("a.blob.core.windows.net", "b.blob.core.windows.net")) == (
        settings.blob_auth,
        settings.blob_account_hosts,
    )


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"BLOB_AUTH": "entra", "BLOB_ACCOUNT_HOSTS": "a.blob.core.windows.net"}, "BLOB_AUTH=entra: needs"),
        ({"IMAGE_FETCH": "worker", "BLOB_AUTH": "entra"}, "BLOB_AUTH=entra: needs"),
        ({"IMAGE_FETCH": "worker", "BLOB_ACCOUNT_HOSTS": "a.blob.core.windows.net"}, "read only with"),
    ],
)
def test_blob_auth_without_worker_fetch_or_hosts_is_a_configuration_error(
    values: dict[str, str], expected: str
) -> None:
    """The identity is used in worker-fetch mode for named hosts only; half a setup stops the start."""
    with pytest.raises(ConfigurationError, match=expected):
        _settings(**values)


class Unused:
    """The guarded analyzer, never called while the setup is only built and closed."""

    async def analyze_guarded_data(self, _image_data: bytes, _stall: object) -> object:
        raise AssertionError("not called")


class ClosedIdentity:
    """A credential that records whether it was closed; it never hands out a token here."""

    def __init__(self) -> None:
        self.closed = False

    async def get_token(self, *_scopes: str, **_options: object) -> object:
        raise AssertionError("not asked")

    async def close(self) -> None:
        self.closed = True


def _fetch_settings(**values: str) -> Settings:
    return _settings(IMAGE_FETCH="worker", BLOB_AUTH="entra", **values)


async def test_the_setup_reads_the_account_hosts_with_the_identity_and_closes_it_last() -> None:
    """``MODERATION_BLOB_AUTH=entra`` puts the blob dispatch in front of the guarded fetch; ``aclose``
    closes the credential it made."""
    from worker.content.setup import KnownContentSetup  # noqa: PLC0415 - the content extra

    identity = ClosedIdentity()
    setup = KnownContentSetup(
        _fetch_settings(BLOB_ACCOUNT_HOSTS="photos.blob.core.windows.net"),
        Unused(),  # type: ignore[arg-type]
        blob_credential=lambda: identity,  # type: ignore[arg-type,return-value]
    )
    await setup.aclose()
    assert (True, True) == (isinstance(setup.fetcher, BlobOrWebFetcher), identity.closed)


def test_an_account_host_that_is_a_pattern_stops_the_setup() -> None:
    """A wildcard would send the token to every storage account: a ``ConfigurationError`` naming it."""
    from worker.content.setup import KnownContentSetup  # noqa: PLC0415 - the content extra

    with pytest.raises(ConfigurationError, match=r"BLOB_ACCOUNT_HOSTS: '\*.blob.core.windows.net'"):
        KnownContentSetup(
            _fetch_settings(BLOB_ACCOUNT_HOSTS="*.blob.core.windows.net"),
            Unused(),  # type: ignore[arg-type]
            blob_credential=ClosedIdentity,  # type: ignore[arg-type]
        )
