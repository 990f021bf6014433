"""Runbook-driven diagnosis: per runbook section, a verdict, the evidence as numbers
against the alerts' thresholds, the likely cause and the runbook's next step.

Diagnosis only reads: it runs configured probes (the CLI) or reads their latest results
(the pages), and prints commands for a human; it never runs them.
"""

from exporter.diagnose.engine import diagnose, diagnose_section
from exporter.diagnose.model import Observation, Run, SectionDiagnosis, exit_code
from exporter.diagnose.sections import SECTION_IDS, SectionDef, load_sections

__all__ = [
    "SECTION_IDS",
    "Observation",
    "Run",
    "SectionDef",
    "SectionDiagnosis",
    "diagnose",
    "diagnose_section",
    "exit_code",
    "load_sections",
]
