"""The memory model: ZeRO-paper accounting by hand, DeepSpeed's own estimators on a real BLOOM, the peak fit."""

from __future__ import annotations

import contextlib
import io
import re

import pytest
from zerosweep.plan.tune.memory_model import (
    MIB,
    MemoryModel,
    ModelSize,
    PeakFit,
    PeakSample,
    StatesSetup,
    fit_errors,
    fit_peak,
    left_out_errors,
    model_states,
)

P = 1_000_000


def setup(stage: int | None, offload: str = "none", gpus: int = 1, nodes: int = 1,
          precision: str = "fp16") -> StatesSetup:
    return StatesSetup(zero_stage=stage, offload=offload, gpus_per_node=gpus, nodes=nodes, precision=precision)


@pytest.mark.parametrize(("stage", "n", "expected_per_param"), [
    # the ZeRO paper, figure 1 / section 3.1: (2 + 2 + K) Psi, K = 12, over N_d ranks
    (0, 4, 2 + 2 + 12),
    (1, 4, 2 + 2 + 12 / 4),
    (2, 4, 2 + (2 + 12) / 4),
    (3, 4, (2 + 2 + 12) / 4),
    (1, 64, 4 + 12 / 64),
    (3, 64, 16 / 64),
])
def test_zero_paper_bytes_per_parameter(stage: int, n: int, expected_per_param: float) -> None:
    states = model_states(P, setup(stage, gpus=n // 2, nodes=2) if n > 8 else setup(stage, gpus=n))
    assert states.gpu_bytes == pytest.approx(expected_per_param * P)
    assert states.host_bytes == 0


def test_offload_moves_optimizer_and_gradient_partition_to_the_host() -> None:
    z2 = model_states(P, setup(2, "cpu", gpus=4))
    assert z2.gpu_bytes == 2 * P and z2.host_bytes == pytest.approx((2 + 12) * P / 4)
    z3 = model_states(P, setup(3, "cpu", gpus=4))  # parameters offloaded too
    assert z3.gpu_bytes == 0 and z3.host_bytes == pytest.approx(16 * P / 4)
    # on CPU ranks the host part is the device part
    assert z3.device_mib("cpu") == pytest.approx(16 * P / 4 / MIB) and z3.device_mib("cuda") == 0


def test_without_deepspeed_and_in_fp32() -> None:
    assert model_states(P, setup(None)).gpu_bytes == 16 * P
    assert model_states(P, setup(2, gpus=2, precision="fp32")).gpu_bytes == 4 * P + (4 + 8) * P / 2


@pytest.mark.parametrize("bad", [setup(4), setup(1, "nvme"), setup(1, precision="fp8"), setup(0, "cpu"),
                                 setup(1, gpus=0)])
def test_bad_setup_is_refused_by_name(bad: StatesSetup) -> None:
    with pytest.raises(ValueError, match="zero_stage|offload|precision|gpus_per_node"):
        model_states(P, bad)


# --- against DeepSpeed ------------------------------------------------------------------------------

CROSS_CHECK_ARCH = {"vocab_size": 50_000, "hidden_size": 1024, "n_layer": 2, "n_head": 8}


@pytest.fixture(scope="module")
def bloom() -> tuple[object, int, int]:
    """A real (random-init) BLOOM, 76M parameters: DeepSpeed prints GiB to 0.01, so the sizes must be GiB-scale."""
    torch = pytest.importorskip("torch")
    from transformers import BloomConfig, BloomForCausalLM

    torch.manual_seed(0)
    config = BloomConfig(**CROSS_CHECK_ARCH)
    model = BloomForCausalLM(config)
    from zerosweep.plan.models import config_shape

    shape = config_shape(config)  # counted on the meta device
    return model, shape.n_params, shape.largest_layer_params


def printed_rows(function: object, *args: object, **kwargs: object) -> dict[str, tuple[float, float]]:
    """DeepSpeed's *_all_live print a table ` per CPU | per GPU | Options` in GiB ("GB" = 2**30 bytes)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert function(*args, **kwargs) is None  # they return nothing: the table is the answer
    rows = {}
    for cpu, gpu, options in re.findall(r"^\s*([\d.]+)GB \|\s*([\d.]+)GB \| (.+)$", out.getvalue(), re.MULTILINE):
        rows[re.sub(r"\s+|OffloadDeviceEnum\.", "", options)] = (float(cpu) * 2**30, float(gpu) * 2**30)
    assert rows, out.getvalue()
    return rows


@pytest.mark.parametrize(("gpus", "nodes"), [(1, 1), (4, 1), (8, 2)])
def test_deepspeed_accounting_matches_deepspeeds_estimators(bloom: tuple[object, int, int], gpus: int,
                                                            nodes: int) -> None:
    pytest.importorskip("deepspeed")
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs_all_live
    from deepspeed.runtime.zero.stage3 import model_to_params as estimate_zero3_params
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs_all_live

    model, n_params, largest = bloom
    # tied embedding counted once, the largest module's own parameters: as DeepSpeed counts the built model
    assert estimate_zero3_params(model) == (n_params, largest)
    tolerance = 0.006 * 2**30  # two printed decimals

    def ours(stage: int, offload: str, accounting: str) -> tuple[float, float]:
        states = model_states(n_params, setup(stage, offload, gpus, nodes), accounting, largest)  # type: ignore[arg-type]
        return states.host_bytes * gpus, states.gpu_bytes  # DeepSpeed's CPU column is per node

    z2 = printed_rows(estimate_zero2_model_states_mem_needs_all_live, model, num_gpus_per_node=gpus,
                      num_nodes=nodes, additional_buffer_factor=1.0)
    assert ours(2, "none", "deepspeed")[1] == pytest.approx(z2["offload_optimizer=none"][1], abs=tolerance)
    assert ours(2, "cpu", "deepspeed")[1] == pytest.approx(z2["offload_optimizer=cpu"][1], abs=tolerance)
    if nodes == 1 and gpus <= 4:  # above that DeepSpeed's floor of 4 bytes per GPU (each rank's fp32 load) wins
        assert ours(2, "cpu", "deepspeed")[0] == pytest.approx(z2["offload_optimizer=cpu"][0], abs=tolerance)

    z3 = printed_rows(estimate_zero3_model_states_mem_needs_all_live, model, num_gpus_per_node=gpus,
                      num_nodes=nodes, additional_buffer_factor=1.0)
    no_offload = z3["offload_param=none,offload_optimizer=none,zero_init=1"]
    full_offload = z3["offload_param=cpu,offload_optimizer=cpu,zero_init=1"]
    assert ours(3, "none", "deepspeed")[1] == pytest.approx(no_offload[1], abs=tolerance)
    assert ours(3, "cpu", "deepspeed")[1] == pytest.approx(full_offload[1], abs=tolerance)
    assert ours(3, "cpu", "deepspeed")[0] == pytest.approx(full_offload[0], abs=tolerance)

    # The systematic difference to the paper's 2+2+12, term by term: DeepSpeed's fp32 gradient partition
    # (4 bytes per parameter over N: beside the 16-bit gradients at stage 2, in place of the 16-bit partition at
    # stage 3) and, at stage 3, one gathered layer of 16-bit parameters and gradients.
    n = gpus * nodes
    assert ours(2, "none", "deepspeed")[1] - ours(2, "none", "zero_paper")[1] == pytest.approx(4 * n_params / n)
    assert ours(3, "none", "deepspeed")[1] - ours(3, "none", "zero_paper")[1] == pytest.approx(
        (4 - 2) * n_params / n + 4 * largest)
    # offloaded: the host holds the fp32 gradient partition instead of the 16-bit one (+2 bytes per parameter / N)
    assert ours(2, "cpu", "deepspeed")[0] - ours(2, "cpu", "zero_paper")[0] == pytest.approx(2 * n_params / nodes)


# --- the peak fit -------------------------------------------------------------------------------------


def test_fit_recovers_a_known_line_and_predicts_an_unrun_micro_batch() -> None:
    states = 1000.0
    samples = [PeakSample(mb, states + 500 + 30 * mb, states) for mb in (1, 2, 4, 8)]
    fit = fit_peak(samples, "known line")
    assert fit.fixed_mib == pytest.approx(500) and fit.per_sample_mib == pytest.approx(30)
    assert fit.r_squared == pytest.approx(1.0)
    assert fit.predict(states, 16) == pytest.approx(states + 500 + 480)
    # a different world size only changes the states part
    assert fit.predict(250.0, 3) == pytest.approx(250 + 500 + 90)
    assert fit.largest_micro_batch(states, states + 500 + 30 * 10 + 29) == 10
    assert fit.largest_micro_batch(states, states + 100) == 0


def test_fit_needs_two_micro_batches_and_a_positive_slope() -> None:
    with pytest.raises(ValueError, match="two micro-batches"):
        fit_peak([PeakSample(4, 10, 0), PeakSample(4, 11, 0)], "one point")
    flat = PeakFit(fixed_mib=1, per_sample_mib=0, points=2, r_squared=None, source="flat")
    with pytest.raises(ValueError, match="flat"):
        flat.largest_micro_batch(0, 100)


# --- judging the model: left out, not in sample -------------------------------------------------------

SIZE = ModelSize(n_params=100 * P, largest_layer_params=10 * P)
STUDY = {"settings": {"training": {"precision": "fp16"}, "runtime": {"device": "cuda"}},
         "points": {"z0": {"deepspeed": True, "zero_stage": 0, "offload": "none", "gpus_per_node": 1, "nodes": 1},
                    "z3": {"deepspeed": True, "zero_stage": 3, "offload": "cpu", "gpus_per_node": 1, "nodes": 1}}}


def probes_on_lines(lines: dict[str, tuple[float, float, tuple[int, ...]]]) -> list[dict[str, object]]:
    """Probes of each point exactly on its line (fixed, per sample) above its model states."""
    model = MemoryModel(STUDY, SIZE, [])
    return [{"run_id": f"{point}-b{mb}", "point_id": point, "status": "ok", "micro_batch": mb,
             "peak_mib": model.states_mib(point) + fixed + per_sample * mb}
            for point, (fixed, per_sample, micro_batches) in lines.items() for mb in micro_batches]


def test_two_probes_fit_exactly_in_sample_but_the_left_out_error_is_not_zero() -> None:
    # Each configuration fit at two micro-batches: its line runs through both, so the in-sample error is 0 by
    # construction. Left out, a probe is predicted from its configuration's one other probe with the other
    # configuration's fixed memory (the rule for a configuration with one micro-batch left), and that misses.
    probes = probes_on_lines({"z0": (1000.0, 2000.0, (2, 4)), "z3": (500.0, 3000.0, (3, 5))})
    model = MemoryModel(STUDY, SIZE, probes)
    fit = fit_errors(model, probes)
    assert fit.predicted == fit.probes == 4 and max(abs(f) for f in fit.fractions) < 1e-12

    left_out = left_out_errors(model, probes)
    assert left_out.predicted == left_out.probes == 4  # every probe, not only those with two others of their own
    assert min(abs(f) for f in left_out.fractions) > 0.01
    # z0 at 2 by hand: z3's line gives the fixed memory (500); z0's probe at 4 its per-sample memory
    per_sample = (1000 + 2000 * 4 - 500) / 4
    states = model.states_mib("z0")
    expected = states + 500 + per_sample * 2
    assert model.left_out(probes[0], probes).source == (
        "refit without it: z0's probe at micro-batch 4 with the fitted configurations' mean fixed memory")
    assert model.left_out(probes[0], probes).predicted_mib == pytest.approx(expected)
    assert left_out.fractions[0] == pytest.approx((expected - probes[0]["peak_mib"]) / probes[0]["peak_mib"])
    assert left_out.under_estimates == sum(f < 0 for f in left_out.fractions) >= 1
    assert left_out.low == min(left_out.fractions) and left_out.high == max(left_out.fractions)


def test_left_out_uses_the_configurations_own_line_where_two_other_micro_batches_fit() -> None:
    # z0 off its line at 8 (+600 MiB): in sample the line bends towards it; left out, 8 is predicted from 2 and 4
    probes = probes_on_lines({"z0": (1000.0, 2000.0, (2, 4, 8))})
    probes[2]["peak_mib"] = float(probes[2]["peak_mib"]) + 600  # type: ignore[arg-type]
    model = MemoryModel(STUDY, SIZE, probes)
    left = model.left_out(probes[2], probes)
    assert left.predicted_mib == pytest.approx(model.states_mib("z0") + 1000 + 2000 * 8)  # exact line through 2, 4
    assert left.source == "refit without it: z0's probes"
    errors = left_out_errors(model, probes)
    assert errors.under_estimates == 2 and errors.probes == 3  # 8 under-predicted, 2 (by its line to 4 and 8) too
    # one probe of a point and nothing else: no refit can predict it
    lone = probes_on_lines({"z3": (500.0, 3000.0, (3,))})
    assert left_out_errors(MemoryModel(STUDY, SIZE, lone), lone).predicted == 0


def test_the_headline_is_the_left_out_error_with_its_under_estimates_and_the_fit_is_named_a_fit() -> None:
    from zerosweep.report.tune.memory_fit import headline

    probes = probes_on_lines({"z0": (1000.0, 2000.0, (2, 4)), "z3": (500.0, 3000.0, (3, 5))})
    model = MemoryModel(STUDY, SIZE, probes)
    left_out = left_out_errors(model, probes)
    text = headline(model, probes)
    assert text.startswith(f"**Left out (out of sample: each probe predicted by the model refitted without it): "
                           f"{100 * left_out.low:+.1f} % to {100 * left_out.high:+.1f} % over 4 of 4 probes that "
                           f"fit, {left_out.under_estimates} of them under-estimates**")
    assert "Fit (in sample, the probes the lines were fitted to): +0.0 %, 0 below measured." in text


def test_a_configuration_with_one_probe_keeps_its_own_per_sample_memory() -> None:
    # z0 fit at 2 and 6 (its own line); z3 only at 4, with far less memory per sample than z0 (as compile gives):
    # its line runs through its probe with z0's fixed memory, not along the line pooled over both
    probes = probes_on_lines({"z0": (1000.0, 2000.0, (2, 6)), "z3": (1000.0, 500.0, (4,))})
    model = MemoryModel(STUDY, SIZE, probes)
    fit = model.fits["z3"]
    assert (fit.fixed_mib, fit.per_sample_mib) == (pytest.approx(1000.0), pytest.approx(500.0))
    assert model.predict("z3", 10) == pytest.approx(model.states_mib("z3") + 1000 + 500 * 10)
    # no configuration with a line of its own: the line pooled over both anchors each at its own probe
    single = probes_on_lines({"z0": (1000.0, 2000.0, (2,)), "z3": (1000.0, 2500.0, (4,))})
    pooled = MemoryModel(STUDY, SIZE, single)
    assert pooled.fits["z0"].source == "z0's probe at micro-batch 2 with the pooled line's fixed memory"
    assert pooled.predict("z0", 2) == pytest.approx(single[0]["peak_mib"])
    assert pooled.predict("z3", 4) == pytest.approx(single[1]["peak_mib"])
    # one micro-batch in all: no line to borrow from
    assert MemoryModel(STUDY, SIZE, probes[2:]).fits == {}
