"""The published schema of the results document, as the tests check documents against it."""

from jsonschema import Draft202012Validator

from netjobs_core.results_schema import SCHEMA

RESULTS_SCHEMA = Draft202012Validator(SCHEMA)
