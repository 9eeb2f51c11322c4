"""CryoSPARC adapter built on cryosparc-tools."""
