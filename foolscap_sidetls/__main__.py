"""C{python -m foolscap_sidetls}: the same as the C{foolscap-sidetls} command."""

from ._cli import main

if __name__ == "__main__":
    main()
