"""Customs supervision: a validator of the consortium (its domain contract comes next)."""
