"""`%load_ext layerlab` in a plain IPython kernel."""

from tests.kernel.conftest import needs_engine_cli


def test_load_ext_registers_magics(ipython_kernel):
    result = ipython_kernel.run(
        "%load_ext layerlab\n"
        "magics = get_ipython().magics_manager.magics\n"
        "print('docker' in magics['line'], 'dockerfile' in magics['cell'])"
    )

    assert result.status == "ok", result.stream("stderr")
    assert result.stream("stdout") == "True True\n"


def test_load_ext_keeps_dockerfile_prompts(ipython_kernel, work_dir):
    ipython_kernel.run("%load_ext layerlab")
    result = ipython_kernel.run("%%dockerfile\n>>> FROM busybox\n... RUN true\n")

    assert result.status == "ok", result.stream("stderr")
    assert (work_dir / "Dockerfile").read_text() == ">>> FROM busybox\n... RUN true\n"


@needs_engine_cli
def test_load_ext_docker_magic_runs_engine(ipython_kernel):
    ipython_kernel.run("%load_ext layerlab")
    result = ipython_kernel.run("%docker images")

    assert result.status == "ok", result.stream("stderr")
    shown = result.stream("stdout") + "".join(d["data"]["text/plain"] for d in result.of_type("display_data"))
    assert shown.startswith("REPOSITORY")
