"""`python -m layerlab.kernel install ...` installs the kernelspec; any other arguments start the kernel."""

import sys


def main() -> int:
    if sys.argv[1:2] == ["install"]:
        from layerlab.kernel.install import main as install_main

        return install_main(sys.argv[2:])

    from ipykernel.kernelapp import IPKernelApp

    from layerlab.kernel.kernel import LayerlabKernel

    IPKernelApp.launch_instance(kernel_class=LayerlabKernel)
    return 0


if __name__ == "__main__":
    sys.exit(main())
