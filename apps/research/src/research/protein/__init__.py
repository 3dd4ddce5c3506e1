"""Protein studies (diffprotein): the Pfam-family benchmark and the screens that read its runs."""
