"""Verdicts from what each job declares it must show; metrics the judgement reads."""
