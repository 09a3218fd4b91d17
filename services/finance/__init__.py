"""Finance: budgets per cost centre and period, committed (planned) and actual (invoiced) costs of sessions."""
