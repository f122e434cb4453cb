"""C{python -m foolscap_sidetls.tahoe ARGS...}: C{tahoe ARGS...} with every Tub role-based."""

from . import main

if __name__ == "__main__":
    main()
