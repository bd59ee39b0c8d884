"""Packaging for txtunnels: Tor-like anonymous communication on Twisted and IPv8."""
import re

from setuptools import find_packages, setup

with open("tunnels/version.py", encoding="utf-8") as f:
    VERSION = re.search(r'^VERSION = "([^"]+)"$', f.read(), re.M).group(1)

setup(
    name="txtunnels",
    version=VERSION,
    description="Onion-routed circuits, exits and hidden services for IPv8 peer-to-peer apps, on Twisted",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["tunnels", "tunnels.*"]) + ["twisted.plugins"],
    package_data={"twisted": ["plugins/tunnels_plugin.py"]},
    install_requires=[
        "twisted[tls]>=24.3",
        "pyipv8>=3.2,<4",
        "libnacl>=2.1",
        "service-identity>=24.1",
        "cryptography>=42",
        "fastbencode>=0.3",
        "prometheus-client>=0.17",
    ],
    extras_require={"test": ["hypothesis>=6.100", "libtorrent==2.1.1", "treq>=23.1"], "bench": ["pyipv8>=3.2,<4"],
                    "fuzz": ["atheris>=2.3", "hypothesis>=6.100"]},
    entry_points={"console_scripts": ["txtunnels = tunnels.cli:main"]},
)
