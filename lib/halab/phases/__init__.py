"""Steps (build) and checks (validate) of each phase, as plain functions of a Context."""
