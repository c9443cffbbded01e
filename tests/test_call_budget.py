"""CVAT's deadline: a call that cannot finish inside SAM2_CALL_BUDGET_S is refused before any model work,
with the number of objects that fit; a call that fits is served. Costs come from the function itself."""

from __future__ import annotations

import pytest
import yaml

from config import Settings
from tests.support import ROOT
from tests.support.cvat import call_function, continue_body, function_instance, start_body


@pytest.fixture(scope="module")
def budgeted(checkpoint, redis_server):
    """A function with a 30 s budget and room for 1,000 objects per call, so the budget is the limit;
    no feature cache, so that every call encodes its frame (a cached frame does not refine the
    per-frame cost: see test_a_cached_frame_leaves_the_per_frame_cost)."""
    platform = function_instance(
        checkpoint,
        SAM2_CALL_BUDGET_S="30",
        SAM2_MAX_OBJECTS="1000",
        SAM2_FEATURE_CACHE_MB="0",
        **redis_server.env(),
    )
    return platform, platform.app


def count_encodes(app) -> list[int]:
    """Calls of the image encoder from now on (a hook on the real module)."""
    calls = [0]
    app.tracker.model.image_encoder.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_costs_are_measured_at_start(budgeted):
    _, app = budgeted
    assert app.budget.budget_s == 30
    assert 0 < app.budget.per_frame_s < 30 and 0 < app.budget.per_object_s < 30
    assert app.budget.estimate(0).fitting_objects >= 1


def test_a_call_that_cannot_fit_is_refused_before_any_model_work(
    budgeted, redis_server, images, start_shapes
):
    platform, app = budgeted
    encodes = count_encodes(app)
    fitting = app.budget.estimate(0).fitting_objects
    too_many = [start_shapes[1]] * (fitting + 1)
    stored_before = redis_server.client().dbsize()
    status, answer = call_function(platform, start_body(images[0], too_many))
    assert status == 413
    message = answer["error"]
    assert f"tracking {fitting + 1} objects" in message and f"about {fitting} objects fit" in message
    assert "CVAT_NUCLIO_DEFAULT_TIMEOUT" in message and "SAM2_CALL_BUDGET_S" in message
    assert encodes[0] == 0  # refused before the image was encoded
    assert redis_server.client().dbsize() == stored_before  # and nothing was stored

    status, answer = call_function(platform, start_body(images[0], start_shapes))
    assert status == 200 and encodes[0] == 1
    status, _ = call_function(platform, continue_body(images[1], answer["states"]))
    assert status == 200 and encodes[0] == 2


def test_served_calls_refine_the_estimates(budgeted, images, start_shapes):
    platform, app = budgeted
    before = (app.budget.per_frame_s, app.budget.per_object_s)
    status, answer = call_function(platform, start_body(images[0], start_shapes[:1]))
    assert status == 200
    assert app.budget.per_frame_s != before[0]  # every served call refines the per-frame cost
    # the per-object cost only moves once the memory bank is full (the most an object costs)
    for index in range(1, 8):
        status, answer = call_function(platform, continue_body(images[index % len(images)], answer["states"]))
        assert status == 200
        full = index > app.tracker.keep_memories
        assert (app.budget.per_object_s != before[1]) == full


def test_a_cached_frame_leaves_the_per_frame_cost(checkpoint, images, start_shapes):
    platform = function_instance(checkpoint, SAM2_CALL_BUDGET_S="30", SAM2_FEATURE_CACHE_MB="64")
    budget = platform.app.budget
    status, _ = call_function(platform, start_body(images[0], start_shapes[:1]))
    assert status == 200
    after_miss = budget.per_frame_s
    status, _ = call_function(platform, start_body(images[0], start_shapes[:1]))  # the same picture
    assert status == 200 and platform.app.tracker.feature_cache.hits == 1
    assert budget.per_frame_s == after_miss


def test_the_budget_can_be_turned_off(checkpoint):
    platform = function_instance(checkpoint, SAM2_CALL_BUDGET_S="0")
    assert platform.app.budget is None


@pytest.mark.parametrize("name", ["function.yaml", "function-gpu.yaml"])
def test_event_timeout_agrees_with_the_budget_and_cvats_deadline(name):
    spec = yaml.safe_load((ROOT / name).read_text())["spec"]
    env = {item["name"]: str(item["value"]) for item in spec["env"]}
    budget = Settings.from_env(env).limits.call_budget_s
    event_timeout = int(spec["eventTimeout"].rstrip("s"))
    assert "SAM2_CALL_BUDGET_S" in env
    # the function may finish what it started, and CVAT (120 s by default) waits longer than the budget
    assert 0 < budget < event_timeout <= 120
