"""The chart refuses to deploy a user's app on the default image, which ships only examples/.

Rendered with the real Helm engine, as tests/test_helm_chart.py does.
"""

from __future__ import annotations

import helm_python as helm
import pytest

from tests.test_helm_chart import CHART_DIR, container, one, render, render_files


@pytest.fixture(scope="module")
def chart():
    with helm.Chart.load(CHART_DIR) as loaded:
        yield loaded


@pytest.mark.parametrize("app", ["billing.tasks:app", "billing/tasks.py"])
def test_an_app_of_your_own_needs_your_own_image(chart, app: str) -> None:
    with pytest.raises(helm.HelmRenderError) as info:
        render_files(chart, {"app": app})
    message = str(info.value)
    assert f"image.repository is required when app ({app}) is not one of the bundled" in message
    assert "contains pgsched and examples/ only" in message
    assert "FROM ghcr.io/pgsched/pgsched" in message and "see the chart README" in message


@pytest.mark.parametrize("app", ["examples/orders.py", "examples.webapp:app"])
def test_bundled_examples_run_on_the_default_image(chart, app: str) -> None:
    ctr = container(one(render(chart, {"app": app}), "Deployment"))
    assert ctr["image"].startswith("ghcr.io/pgsched/pgsched:")
    assert ctr["args"][:2] == ["worker", app]


def test_your_app_on_your_image_renders(chart) -> None:
    values = {"app": "billing.tasks:app",
              "image": {"repository": "registry.example.com/billing", "tag": "1.0"}}
    ctr = container(one(render(chart, values), "Deployment"))
    assert ctr["image"] == "registry.example.com/billing:1.0"
    assert ctr["args"][:2] == ["worker", "billing.tasks:app"]
