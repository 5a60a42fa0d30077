"""The dead letters of the job system: failed jobs listed, replayed and discarded over HTTP.

The job system itself is in servicedesk/core/jobs.py (contract) and core/job_runner.py.
"""
