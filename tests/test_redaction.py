"""Redaction: secret variable values, Kubernetes Secret data, credential headers and URL passwords are masked;
bindings never are; a task run records masked input with its full input sealed; worker logs are masked."""

from __future__ import annotations

import base64
import logging

import pytest
import yaml

from orchestrator.errors import ConfigurationError
from orchestrator.inputs import BoundTask
from orchestrator.outcome import Failed, Succeeded, Waiting
from orchestrator.redaction import MASK, NO_SECRETS, Secrets, credential, redact, redact_message, redact_yaml
from orchestrator.sealing import conceal, unseal
from orchestrator.vault import Vault
from workers import logredaction
from workers.runner import conceal as conceal_outcome

TOKEN = "tok-Zq9-SECRETMARKER"
SECRETS = Secrets.of([TOKEN])
SECRET_YAML = """
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Secret
metadata: {name: creds, namespace: shop}
data: {password: cHctREFUQU1BUktFUg==, fromVariable: "${var.password}"}
stringData: {token: plain-text-token}
"""


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_a_secret_value_is_masked_wherever_it_appears_in_a_string_and_in_the_forms_it_travels_in() -> None:
    # Given a secret with characters a URL encodes, and values holding it plainly, percent-encoded, in base64,
    # escaped inside JSON text and as a whole string
    password = 'p@ss/w0rd"x'
    value = {
        "body": f"the password is {password}, really",
        "url": "https://example.com/login?p=p%40ss%2Fw0rd%22x",
        "encoded": f"data {b64(password)} end",
        "json": '{"password": "p@ss/w0rd\\"x"}',
        "list": [password, 3, None, True],
    }
    # When it is redacted
    masked = redact(value, Secrets.of([password]))
    # Then the secret is in none of its forms, and everything else is kept
    assert masked == {
        "body": f"the password is {MASK}, really",
        "url": f"https://example.com/login?p={MASK}",
        "encoded": f"data {MASK} end",
        "json": f'{{"password": "{MASK}"}}',
        "list": [MASK, 3, None, True],
    }


def test_a_short_secret_is_masked_only_where_a_whole_string_is_that_secret() -> None:
    # Given a three-letter secret
    secrets = Secrets.of(["abc"])
    # When strings that hold it inside other text, and one that is exactly it, are redacted
    masked = redact({"word": "abcdef", "exact": "abc"}, secrets)
    # Then only the exact one is masked: masking every "abc" would garble text and spell the secret out
    assert masked == {"word": "abcdef", "exact": MASK}


def test_credential_headers_are_masked_and_keep_their_scheme_while_other_headers_stay() -> None:
    # Given headers of every credential kind, and ordinary ones
    headers = {
        "Authorization": "Bearer abc.def",
        "proxy-authorization": "Basic dXNlcjpwdw==",
        "Cookie": "session=1",
        "Set-Cookie": ["a=1", "b=2"],
        "X-Api-Key": "k-1",
        "X-Build-Token": "t-1",
        "Private-Key": "pk",
        "Accept": "application/json",
        "X-Request-Id": "r-1",
    }
    # When they are redacted
    masked = redact({"headers": headers})["headers"]
    # Then every credential is masked, the auth scheme is kept, and the others are as they were
    assert masked == {
        "Authorization": f"Bearer {MASK}",
        "proxy-authorization": f"Basic {MASK}",
        "Cookie": MASK,
        "Set-Cookie": [MASK, MASK],
        "X-Api-Key": MASK,
        "X-Build-Token": MASK,
        "Private-Key": MASK,
        "Accept": "application/json",
        "X-Request-Id": "r-1",
    }


def test_bindings_are_never_masked_so_a_document_shows_where_a_secret_comes_from() -> None:
    # Given a document that takes its credentials from variables
    document = {
        "headers": {"Authorization": "Bearer ${var.token}", "X-Api-Key": "${var.key}"},
        "url": "https://deploy:${var.password}@registry.example.com/v2/",
    }
    # When it is redacted
    masked = redact(document, SECRETS)
    # Then it is unchanged
    assert masked == document
    assert credential("Bearer ${var.token} extra") == f"Bearer ${{var.token}} {MASK}"


def test_a_url_password_is_masked_and_the_user_and_host_kept() -> None:
    # Given URLs with and without a password in their user-info
    text = "clone https://deploy:hunter22@git.example.com/repo.git, then http://anon@example.com/x"
    # When redacted
    masked = redact({"text": text})["text"]
    # Then only the password is masked
    assert masked == f"clone https://deploy:{MASK}@git.example.com/repo.git, then http://anon@example.com/x"


def test_secret_data_is_masked_in_parsed_objects_in_k8s_output_and_in_yaml_text() -> None:
    # Given a parsed Secret, a K8S task's output holding a Secret, and a K8S task's yaml
    parsed = {"kind": "Secret", "metadata": {"name": "a"}, "data": {"p": "cHc="}, "stringData": {"q": "x"}}
    output = {"response": {"secrets": {"creds": {"metadata": {"name": "creds"}, "data": {"p": "cHc="}}}}}
    task_input = {"action": "CREATE", "yaml": SECRET_YAML}
    # When they are redacted
    masked_object, masked_output, masked_input = (redact(value) for value in (parsed, output, task_input))
    # Then every data and stringData value is masked, and the rest is kept
    assert masked_object["data"] == {"p": MASK} and masked_object["stringData"] == {"q": MASK}
    assert masked_output["response"]["secrets"]["creds"]["data"] == {"p": MASK}
    namespace, secret = yaml.safe_load_all(masked_input["yaml"])
    assert namespace == {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}
    assert secret["data"] == {"password": MASK, "fromVariable": "${var.password}"}
    assert secret["stringData"] == {"token": MASK}
    assert "cHctREFUQU1BUktFUg==" not in masked_input["yaml"] and "plain-text-token" not in masked_input["yaml"]


def test_a_secret_written_as_a_plain_scalar_is_masked_and_the_yaml_still_reads() -> None:
    # Given YAML as the binding of a K8S task writes it: a secret value as a plain (unquoted) scalar
    text = "kind: ConfigMap\nmetadata: {name: app}\ndata:\n  dsn: pg-PLAINMARK-77\n"

    # When it is masked
    masked = redact_yaml(text, Secrets.of(["pg-PLAINMARK-77"]))

    # Then the value is gone and the text is still YAML with the same structure (`*****` unquoted is an alias)
    assert "PLAINMARK" not in masked
    assert yaml.safe_load(masked) == {"kind": "ConfigMap", "metadata": {"name": "app"}, "data": {"dsn": MASK}}


def test_yaml_without_secrets_is_left_as_written() -> None:
    # Given Kubernetes YAML with no Secret, and text that is not YAML until it is bound
    plain = "apiVersion: v1\nkind: ConfigMap  # the app's settings\nmetadata: {name: c}\n"
    broken = "kind: Secret\ndata: {a: [\n"
    # When redacted
    # Then the text is unchanged (formatting and comments included)
    assert redact_yaml(plain) == plain
    assert redact_yaml(broken) == broken


def test_a_message_has_credential_headers_written_into_it_masked() -> None:
    # Given error messages quoting a header and a secret
    message = f"GET https://x/ answered 401 (sent Authorization: Bearer abc123, X-Api-Key='k9'; token {TOKEN})"
    # When redacted as a message
    masked = redact_message(message, SECRETS)
    # Then neither credential nor the secret is left
    assert (
        masked == f"GET https://x/ answered 401 (sent Authorization: Bearer {MASK}, X-Api-Key='{MASK}'; token {MASK})"
    )


def test_a_bound_task_records_masked_input_and_keeps_the_full_one_sealed() -> None:
    # Given a task bound with a secret variable's value, and a vault
    vault = Vault("a-test-key-long-enough-to-seal-things")
    task = BoundTask(
        {"url": "https://x/", "headers": {"Authorization": f"Bearer {TOKEN}"}},
        bindings={"var.token": TOKEN},
        endpoints={"kubernetesServer": "e-1"},
    )
    # When it is concealed for recording
    recorded, sealed = conceal(task, SECRETS, vault)
    # Then the recorded input and bindings hold no secret, and the sealed text opens to the full input
    assert recorded.input == {"url": "https://x/", "headers": {"Authorization": f"Bearer {MASK}"}}
    assert recorded.bindings == {"var.token": MASK} and recorded.endpoints == task.endpoints
    assert sealed is not None and TOKEN not in sealed
    opened = unseal(sealed, recorded.input, recorded.bindings, vault)
    assert opened.input == task.input and opened.bindings == task.bindings
    assert opened.secrets == SECRETS


def test_a_task_with_nothing_secret_is_recorded_as_bound_and_nothing_is_sealed() -> None:
    # Given a task with no secret in it
    task = BoundTask({"url": "https://x/", "headers": {"Accept": "text/plain"}})
    # When it is concealed
    recorded, sealed = conceal(task, SECRETS, Vault("key-key-key-key"))
    # Then it is recorded as it is, and its run reads its recorded input
    assert recorded == task and sealed is None
    assert unseal(None, recorded.input, {}, Vault(None)).input == task.input


def test_without_a_vault_key_the_input_cannot_be_sealed_and_is_recorded_as_bound() -> None:
    # Given a task holding a credential header and no vault key
    task = BoundTask({"headers": {"Authorization": "Bearer abc"}})
    # When it is concealed
    recorded, sealed = conceal(task, NO_SECRETS, Vault(None))
    # Then nothing could be sealed, so the worker must get the input as bound (the API masks it when shown)
    assert recorded == task and sealed is None


def test_a_sealed_input_that_the_key_cannot_open_says_so() -> None:
    # Given input sealed with one key
    _, sealed = conceal(BoundTask({"headers": {"Cookie": "a=1"}}), NO_SECRETS, Vault("the-first-key-of-two"))
    # When a worker with another key opens it
    # Then it is told why it cannot
    with pytest.raises(ConfigurationError, match="ROLLWAY_SECRET_KEY"):
        unseal(sealed, {}, {}, Vault("the-second-key-of-two"))


def test_an_outcome_is_recorded_with_its_secrets_masked() -> None:
    # Given outcomes quoting a secret in output and messages
    done = Succeeded({"responseBody": f"echo {TOKEN}", "responseHeaders": {"Set-Cookie": "s=1"}})
    failed = Failed(f"GET answered 403 for {TOKEN}", {"responseJson": {"token": TOKEN}})
    waiting = Waiting(1.0, {"kept": TOKEN}, f"still waiting with {TOKEN}")
    # When the worker conceals them
    masked = [conceal_outcome(outcome, SECRETS) for outcome in (done, failed, waiting)]
    # Then no secret is in what is recorded (the executor's own state is kept for its next attempt)
    assert masked[0] == Succeeded({"responseBody": f"echo {MASK}", "responseHeaders": {"Set-Cookie": MASK}})
    assert masked[1] == Failed(f"GET answered 403 for {MASK}", {"responseJson": {"token": MASK}})
    assert masked[2] == Waiting(1.0, {"kept": TOKEN}, f"still waiting with {MASK}")


def test_what_the_worker_logs_while_it_runs_a_task_has_that_tasks_secrets_masked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given the worker's log filter, and an executor that logs an error quoting its input
    logredaction.install()
    executor_log = logging.getLogger("workers.executors.k8s")
    caplog.set_level(logging.INFO)
    # When it logs, with a traceback, while a task with that secret runs
    with logredaction.secrets_of_this_task(SECRETS):
        try:
            raise ValueError(f"cannot call https://admin:pw1234@k8s.example.com with {TOKEN}")
        except ValueError:
            executor_log.exception("K8S %s failed unexpectedly for %s", "CREATE", TOKEN)
    # Then neither the message nor the traceback holds the secret or the URL password
    text = caplog.text
    assert "K8S CREATE failed unexpectedly" in text and "ValueError" in text
    assert TOKEN not in text and "pw1234" not in text
