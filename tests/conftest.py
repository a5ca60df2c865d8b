"""Every test sees 8 simulated CPU devices, so sharded code runs as on a multi-GPU host."""

import inspect
import os
import tempfile

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax  # noqa: E402
import pytest  # noqa: E402

from medgan_jax import app  # noqa: E402

jax.config.update("jax_platforms", "cpu")
# Runs of the same config (resume, NaN, sampling tests) reuse compiled steps.
app.configure(os.path.join(tempfile.gettempdir(), "medgan_jax_test_xla_cache"), distributed=False)


@pytest.fixture(scope="session", autouse=True)
def _eight_devices():
    assert jax.device_count() == 8, "tests expect 8 simulated CPU devices"


@pytest.fixture
def batch_iterators(monkeypatch):
    """Every iterator pipeline.global_batches returns during the test, to check that the
    training loops close theirs (their pipelines' threads stop with the run)."""
    from medgan_jax.data import pipeline

    made = []
    original = pipeline.global_batches

    def recorded(*args, **kwargs):
        made.append(original(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(pipeline, "global_batches", recorded)
    return made


def all_closed(iterators) -> bool:
    return bool(iterators) and all(
        inspect.getgeneratorstate(it) == inspect.GEN_CLOSED for it in iterators
    )
