from setuptools import setup

with open("foolscap_sidetls/_version.py") as f:
    version = f.read().split('"')[1]

with open("README.md") as f:
    long_description = f.read()

setup(
    name="foolscap-sidetls",
    version=version,
    description=(
        "Foolscap over any Twisted transport, with the TLS side taken from the "
        "connection's role (listener = TLS server) instead of the socket direction"
    ),
    long_description=long_description,
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.11",
    packages=["foolscap_sidetls", "twisted.plugins"],
    package_data={"foolscap_sidetls": ["py.typed"]},
    install_requires=[
        "twisted>=23.10",
        "foolscap>=24.9",
        "pyopenssl",
        # onion keys: new ones, and the public key of tor's expanded secret
        # (crypto_scalarmult_ed25519_base_noclamp, PyNaCl 1.4 and later)
        "pynacl>=1.4",
        # tub.location = AUTO: every interface's addresses, as Tahoe-LAFS 1.20
        "psutil",
    ],
    extras_require={
        "tor": ["txtorcon>=23.11"],
        "i2p": ["txi2p-tahoe>=0.3.7"],
        "test": ["pytest>=7", "hypothesis>=6"],
        "dev": ["mypy", "mypy-zope", "types-psutil"],
    },
    entry_points={
        "console_scripts": ["foolscap-sidetls = foolscap_sidetls._cli:main"],
    },
    classifiers=[
        "Framework :: Twisted",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3.11",
        "License :: OSI Approved :: MIT License",
    ],
)
