"""pytest plugin: sandbox fixtures for users testing their own DAGs."""

from __future__ import annotations
