import pytest

from edgekd.builtin import builtin_dir
from edgekd.errors import ConfigError, UnknownNameError
from edgekd.targets import Runtime, list_targets, load_target

REQUIRED = {"jetson-orin", "jetson-orin-nx", "jetson-orin-nano", "raspberry-pi-5", "phone-big-core",
            "x86-avx2", "x86-avx512-vnni", "host"}


def test_required_profiles_ship():
    assert REQUIRED <= set(list_targets())


@pytest.mark.parametrize("name", list_targets())
def test_every_profile_validates_and_cites_its_peak_numbers(name):
    profile = load_target(name)
    assert profile.name == name and profile.memory_bandwidth_gbs > 0
    peak = profile.peak  # int8 is never slower than fp16, nor fp16 than fp32, on any of these chips
    assert peak.int8_tops >= peak.fp16_tflops >= peak.fp32_tflops > 0
    text = (builtin_dir("targets") / f"{name}.yaml").read_text()
    if not profile.is_host:
        assert "Source" in text  # every peak number carries its public source
    if profile.runtime is Runtime.TENSORRT:
        assert profile.quantization.activations.value == "int8-symmetric"  # TensorRT: signed, zero-point 0
    else:
        assert profile.threads


def test_host_is_detected():
    host = load_target("host")
    assert host.is_host and host.threads >= 1 and "this machine" in host.description
    assert not load_target("jetson-orin").is_host


def test_unknown_target_lists_known_and_closest():
    with pytest.raises(UnknownNameError, match=r"Did you mean 'jetson-orin'\?.*Known targets: host, jetson-orin"):
        load_target("jetson-orn")


def test_profile_file_with_bad_field_names_its_line(tmp_path):
    text = (builtin_dir("targets") / "x86-avx2.yaml").read_text().replace("threads: 4", "threads: many")
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    line = text.splitlines().index("threads: many") + 1
    with pytest.raises(ConfigError, match=rf"mine.yaml:{line}: threads: "):
        load_target(str(path))
