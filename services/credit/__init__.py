"""The public credit service center: a consortium validator (its contract comes next)."""
