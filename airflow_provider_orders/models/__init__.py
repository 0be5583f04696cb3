"""What each API's answers mean: one small module per API, the only code that reads API dicts.

Pure values and parsers (stdlib only: no Airflow, no HTTP client), so every layer above — hooks,
operators, sensors, triggers — can use them at no import cost.
"""
