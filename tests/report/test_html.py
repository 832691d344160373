"""report.html: parses, embeds every figure, makes no network request, shows the tables and the setup."""

from __future__ import annotations

import base64
import io
import re
from html.parser import HTMLParser

import matplotlib.image
import pytest

from reglab.report.digest import PAPER_TABLE9_MNIST
from .browser import check_page, find_chromium, screenshot

MNIST_FIGURES = {"test_error", "test_error_gap", "training_time", "loss_iter_per_method", "loss_iter_overlay",
                 "loss_epoch_per_method", "loss_epoch_overlay", "val_error_per_method", "val_error_overlay",
                 "weight_histograms", "hidden_activation"}
POINTCLOUD_FIGURES = (MNIST_FIGURES - {"hidden_activation"}) | {"decision_boundaries"}
VOID = {"meta", "img", "br", "hr", "link", "input", "col", "wbr", "source", "area", "base"}


class Page(HTMLParser):
    """Collects images, links, ids and text, and checks that every non-void element is closed in order."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.images, self.links, self.ids, self.metas = [], [], set(), []
        self.stack, self.mismatches, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "img":
            self.images.append(a)
        if tag == "meta":
            self.metas.append(a)
        for key in ("href", "src"):
            if key in a:
                self.links.append(a[key])
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.mismatches.append((tag, list(self.stack[-3:])))
            return
        self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def parse(path) -> Page:
    p = Page()
    p.feed(path.read_text(encoding="utf-8"))
    p.close()
    return p


@pytest.mark.parametrize("which, figures", [("mnist_report", MNIST_FIGURES),
                                            ("pointcloud_report", POINTCLOUD_FIGURES)])
def test_the_page_parses_and_embeds_every_figure_as_a_decodable_png(request, which, figures):
    page = parse(request.getfixturevalue(which))
    assert page.mismatches == [] and page.stack == []
    assert {f"fig-{name}" for name in figures} <= page.ids
    assert len(page.images) == len(figures)
    for img in page.images:
        assert img["src"].startswith("data:image/png;base64,")
        pixels = matplotlib.image.imread(io.BytesIO(base64.b64decode(img["src"].split(",", 1)[1])), format="png")
        assert pixels.shape[0] > 200 and pixels.shape[1] > 400
        assert pixels[..., :3].std() > 0.05  # not a blank canvas


@pytest.mark.parametrize("which", ["mnist_report", "pointcloud_report"])
def test_the_page_requests_nothing_from_the_network(request, which):
    path = request.getfixturevalue(which)
    page = parse(path)
    assert not [u for u in page.links if re.match(r"\s*(https?:)?//", u, re.I)]
    assert "url(" not in path.read_text()  # no CSS fetches either
    csp = [m["content"] for m in page.metas if m.get("http-equiv") == "Content-Security-Policy"]
    assert csp and "default-src 'none'" in csp[0] and "img-src data:" in csp[0]
    for u in page.links:  # relative links point at files that exist beside the page
        if not u.startswith(("data:", "#")):
            assert (path.parent / u).is_file(), u


def test_the_mnist_tables_carry_the_papers_table9_column_and_every_statistic(mnist_report):
    text = " ".join(parse(mnist_report).text)
    assert "Srivastava 2014, Table 9 (%)" in text
    for value in PAPER_TABLE9_MNIST.values():
        assert f"{value:.2f}" in text
    for column in ("Test error, last epoch", "Test error, best-val epoch", "Best val error", "Final train loss",
                   "Epochs run", "Weight sparsity", "Training time (s)"):
        assert column in text
    assert "Lowest mean test error" in text
    assert "A − B, test error (pp)" in text and "A − B, val error (pp)" in text


def test_the_quick_study_on_mnist_points_to_the_preset_that_shows_table9s_ranking(tmp_path, mnist_report):
    from reglab.report import build_report
    from reglab.study.presets import TABLE9_CPU_WALL_MIN
    from .conftest import mnist_config, write_synthetic_run
    write_synthetic_run(tmp_path, mnist_config(n_epochs=3).replace(name="mnist-quick"))
    text = " ".join(parse(build_report(tmp_path)).text)
    expected = f"reglab run mnist --preset table9-cpu (784-512-512-10, 50 epochs, 3 seeds; about {TABLE9_CPU_WALL_MIN} min"
    assert "Next:" in text and expected in text
    assert expected in (tmp_path / "summary.md").read_text()
    # another study (or the quick preset on Fashion-MNIST, where table9-cpu was not validated) has no pointer
    assert "--preset table9-cpu" not in " ".join(parse(mnist_report).text)
    assert "--preset table9-cpu" not in (mnist_report.parent / "summary.md").read_text()


def test_the_pointcloud_tables_have_no_paper_column(pointcloud_report):
    text = " ".join(parse(pointcloud_report).text)
    assert "Table 9 (%)" not in text
    assert "Decision boundaries" in text


def test_the_setup_section_says_how_to_reproduce_the_run(mnist_report, mnist_run):
    text = " ".join(parse(mnist_report).text)
    assert f"reglab run --config config.toml --seeds 3 --out {mnist_run}" in text
    assert "784-64-64-10 multilayer perceptron" in text
    assert "mnist: 50,000 training, 10,000 validation and 10,000 test examples" in text
    assert "checksums.train-images-idx3-ubyte.gz.sha256" in text  # provenance from dataset.json
    for hp in ("l2", "l1_start", "kl_rho", "max_norm", "dropout_input", "dropout_hidden", "momentum", "lr_schedule",
               "nesterov", "beta2"):
        assert re.search(rf"\b{hp}\b", text), hp
    for formula in ("(λ/2)·Σ w²", "λ₁·Σ |w|", "KL(ρ ‖ qⱼ)", "wⱼ ← wⱼ·min(1, c/‖wⱼ‖₂)",
                    "Inverted dropout"):
        assert formula in text, formula
    for env in ("2.13.0+cpu", "Synthetic CPU @ 2.0GHz", "total wall time of the study", "150.0 s"):
        assert env in text, env


@pytest.mark.browser
@pytest.mark.parametrize("which", ["mnist_report", "pointcloud_report"])
def test_a_headless_browser_decodes_every_image_without_errors(request, which, tmp_path):
    browser = find_chromium()
    if browser is None:
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium; .ci/run installs it)")
    path = request.getfixturevalue(which)
    verdict = check_page(browser, path)
    assert verdict["errors"] == [] and verdict["console"] == []
    assert verdict["images"] == len(parse(path).images) and verdict["undecoded"] == []
    assert min(verdict["widths"]) > 0
    shot = tmp_path / f"{which}.png"
    screenshot(browser, path, shot)
    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (4000, 1280) and pixels[..., :3].std() > 0.05


@pytest.mark.browser
def test_the_browser_probe_catches_a_broken_image_and_a_network_request(mnist_report, tmp_path):
    browser = find_chromium()
    if browser is None:
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium; .ci/run installs it)")
    bad = mnist_report.with_name("broken.html")
    bad.write_text(mnist_report.read_text().replace(
        "</main>", '<img src="https://example.invalid/x.png" alt="remote">'
                   '<img src="data:image/png;base64,AAAA" alt="corrupt"></main>'))
    try:
        verdict = check_page(browser, bad)
    finally:
        bad.unlink()
    assert sorted(verdict["undecoded"]) == ["corrupt", "remote"]
    assert any("blocked by CSP: https://example.invalid/x.png" in e for e in verdict["errors"])
    assert any("example.invalid" in line for line in verdict["console"])  # chromium's own CSP message
