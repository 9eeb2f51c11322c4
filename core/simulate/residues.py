"""Residue composition and side-chain templates for the simulated model.

Frequencies are the usual amino-acid composition of globular proteins, so
the mean number of non-hydrogen atoms per residue (~7.8) and the C/N/O/S
ratios come out as in real proteins. Templates place each side-chain atom
from its parent, grandparent and great-grandparent (internal coordinates):
(name, element, parent, chi index or -1, torsion offset deg, bond angle deg).
Rings use 120 deg angles and 0/180 deg torsions; they close approximately,
which is all 3-4 A density can show.
"""

RESIDUE_FREQUENCY = {
    "ALA": 8.3, "ARG": 5.5, "ASN": 4.1, "ASP": 5.5, "CYS": 1.4, "GLN": 3.9, "GLU": 6.8,
    "GLY": 7.1, "HIS": 2.3, "ILE": 5.9, "LEU": 9.7, "LYS": 5.8, "MET": 2.4, "PHE": 3.9,
    "PRO": 4.7, "SER": 6.6, "THR": 5.3, "TRP": 1.1, "TYR": 2.9, "VAL": 6.9,
}

_SP3, _SP2 = 111.0, 120.0

SIDE_CHAINS = {
    "GLY": [],
    "ALA": [],
    "SER": [("OG", "O", "CB", 0, 0.0, _SP3)],
    "CYS": [("SG", "S", "CB", 0, 0.0, _SP3)],
    "VAL": [("CG1", "C", "CB", 0, 0.0, _SP3), ("CG2", "C", "CB", 0, 120.0, _SP3)],
    "THR": [("OG1", "O", "CB", 0, 0.0, _SP3), ("CG2", "C", "CB", 0, -120.0, _SP3)],
    "PRO": [("CG", "C", "CB", -1, 30.0, 104.0), ("CD", "C", "CG", -1, -35.0, 105.0)],
    "ILE": [("CG1", "C", "CB", 0, 0.0, _SP3), ("CG2", "C", "CB", 0, -120.0, _SP3),
            ("CD1", "C", "CG1", 1, 0.0, _SP3)],
    "LEU": [("CG", "C", "CB", 0, 0.0, _SP3), ("CD1", "C", "CG", 1, 0.0, _SP3),
            ("CD2", "C", "CG", 1, 120.0, _SP3)],
    "ASP": [("CG", "C", "CB", 0, 0.0, _SP3), ("OD1", "O", "CG", 1, 0.0, _SP2),
            ("OD2", "O", "CG", 1, 180.0, _SP2)],
    "ASN": [("CG", "C", "CB", 0, 0.0, _SP3), ("OD1", "O", "CG", 1, 0.0, _SP2),
            ("ND2", "N", "CG", 1, 180.0, _SP2)],
    "GLU": [("CG", "C", "CB", 0, 0.0, _SP3), ("CD", "C", "CG", 1, 0.0, _SP3),
            ("OE1", "O", "CD", 2, 0.0, _SP2), ("OE2", "O", "CD", 2, 180.0, _SP2)],
    "GLN": [("CG", "C", "CB", 0, 0.0, _SP3), ("CD", "C", "CG", 1, 0.0, _SP3),
            ("OE1", "O", "CD", 2, 0.0, _SP2), ("NE2", "N", "CD", 2, 180.0, _SP2)],
    "LYS": [("CG", "C", "CB", 0, 0.0, _SP3), ("CD", "C", "CG", 1, 0.0, _SP3),
            ("CE", "C", "CD", 2, 0.0, _SP3), ("NZ", "N", "CE", 3, 0.0, _SP3)],
    "MET": [("CG", "C", "CB", 0, 0.0, _SP3), ("SD", "S", "CG", 1, 0.0, _SP3),
            ("CE", "C", "SD", 2, 0.0, 100.0)],
    "ARG": [("CG", "C", "CB", 0, 0.0, _SP3), ("CD", "C", "CG", 1, 0.0, _SP3),
            ("NE", "N", "CD", 2, 0.0, _SP3), ("CZ", "C", "NE", -1, 180.0, _SP2),
            ("NH1", "N", "CZ", -1, 0.0, _SP2), ("NH2", "N", "CZ", -1, 180.0, _SP2)],
    "HIS": [("CG", "C", "CB", 0, 0.0, _SP3), ("ND1", "N", "CG", 1, 0.0, _SP2),
            ("CD2", "C", "CG", 1, 180.0, _SP2), ("CE1", "C", "ND1", -1, 180.0, 108.0),
            ("NE2", "N", "CD2", -1, 180.0, 108.0)],
    "PHE": [("CG", "C", "CB", 0, 0.0, _SP3), ("CD1", "C", "CG", 1, 0.0, _SP2),
            ("CD2", "C", "CG", 1, 180.0, _SP2), ("CE1", "C", "CD1", -1, 180.0, _SP2),
            ("CE2", "C", "CD2", -1, 180.0, _SP2), ("CZ", "C", "CE1", -1, 0.0, _SP2)],
    "TYR": [("CG", "C", "CB", 0, 0.0, _SP3), ("CD1", "C", "CG", 1, 0.0, _SP2),
            ("CD2", "C", "CG", 1, 180.0, _SP2), ("CE1", "C", "CD1", -1, 180.0, _SP2),
            ("CE2", "C", "CD2", -1, 180.0, _SP2), ("CZ", "C", "CE1", -1, 0.0, _SP2),
            ("OH", "O", "CZ", -1, 180.0, _SP2)],
    "TRP": [("CG", "C", "CB", 0, 0.0, _SP3), ("CD1", "C", "CG", 1, 0.0, 127.0),
            ("CD2", "C", "CG", 1, 180.0, 127.0), ("NE1", "N", "CD1", -1, 180.0, 110.0),
            ("CE2", "C", "CD2", -1, 180.0, 107.0), ("CE3", "C", "CD2", -1, 0.0, 134.0),
            ("CZ2", "C", "CE2", -1, 180.0, _SP2), ("CZ3", "C", "CE3", -1, 180.0, _SP2),
            ("CH2", "C", "CZ2", -1, 0.0, _SP2)],
}
