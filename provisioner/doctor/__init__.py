"""``runnerctl doctor``: classify failed jobs, probe the runner host, say how to fix it."""

from provisioner.doctor.catalogue import Catalogue, Category, Signature, load_catalogue
from provisioner.doctor.matcher import Confidence, Evidence, Finding, classify
from provisioner.doctor.service import (
    Diagnosis,
    GroupReport,
    JobRef,
    ProbePlan,
    diagnose_job,
    diagnose_log,
    probe,
    scan_group,
)

__all__ = [
    "Catalogue",
    "Category",
    "Confidence",
    "Diagnosis",
    "Evidence",
    "Finding",
    "GroupReport",
    "JobRef",
    "ProbePlan",
    "Signature",
    "classify",
    "diagnose_job",
    "diagnose_log",
    "load_catalogue",
    "probe",
    "scan_group",
]
