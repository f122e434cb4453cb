"""The foolscap-sidetls command (foolscap_sidetls._cli)."""
