"""Operator commands for a deployed stack: start, watch, runs, summary, rerun.

They use boto3 with the user's own credentials and region. With ``--endpoint-url`` (or boto3's
``AWS_ENDPOINT_URL``) they talk to ``batchpipe local serve`` instead, so the same workflow can be
rehearsed on the embedded AWS.
"""
