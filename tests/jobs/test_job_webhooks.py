"""Job events are deliverable by webhooks: a failed job reaches a real receiver once, in
Slack's format, saying which job failed and why."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "webhooks"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "alerts"))

from jobstack import project, start_agent, stop, wait_for  # noqa: E402
from serving import running_server  # noqa: E402
from test_alerts import slack_message  # noqa: E402
from webhook_receiver import Receiver  # noqa: E402
from webhook_stack import FAST  # noqa: E402

from eventflow.sdk.jobs import Jobs  # noqa: E402
from eventflow.sdk.webhooks import Webhooks  # noqa: E402


def test_a_failed_job_is_delivered_to_slack_once(tmp_path):
    home = tmp_path / "home"
    with Receiver() as receiver, running_server(home, env=FAST) as url:
        agent = start_agent(home, url, tmp_path / "agent.out")
        try:
            Webhooks(url).create(receiver.url, ["job.failed"], format="slack")
            jobs = Jobs(url)
            job = jobs.add("broken", str(project(tmp_path / "project")), env_manager="local",
                           parameters={"marker": str(tmp_path / "m.txt"), "exit_code": "3"})
            jobs.run_now(job["job_id"])
            wait_for(lambda: jobs.runs(job["job_id"])[0]["status"] == "FAILED", "the run to fail")
            receiver.wait_for(lambda: len(receiver.received) >= 1)
            [delivered] = receiver.received
            text = slack_message(delivered.json)
            assert f"job {job['job_id']} failed (attempt 1" in text and "exit code 3" in text
            assert len(receiver.ids()) == 1
        finally:
            stop(agent)
