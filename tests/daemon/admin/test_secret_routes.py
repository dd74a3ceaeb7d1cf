"""The admin API's integration secrets on the real daemon: values go in, never out."""

from __future__ import annotations

from tests.helpers import AdminClient, DaemonProcess

VALUE = "tok-4f9a2c-never-shown"


def test_set_list_delete_and_the_value_never_comes_back(
    admin: AdminClient, daemon: DaemonProcess
) -> None:
    made = admin.call("PUT", "/v1/secrets/API_TOKEN", {"value": VALUE})
    assert made["name"] == "API_TOKEN" and made["used_by"] == []
    admin.call("PUT", "/v1/secrets/API_TOKEN", {"value": VALUE + "-2"})  # a new value
    listed = admin.request("GET", "/v1/secrets")
    assert [s["name"] for s in listed.json()["secrets"]] == ["API_TOKEN"]
    assert VALUE.encode() not in listed.body + daemon.log().encode()
    assert admin.call("DELETE", "/v1/secrets/API_TOKEN") == {"deleted": "API_TOKEN"}
    assert admin.get("/v1/secrets") == {"secrets": []}
    assert admin.request("DELETE", "/v1/secrets/API_TOKEN").status == 404


def test_bad_names_and_values_are_clear_400s_that_do_not_echo_the_value(
    admin: AdminClient,
) -> None:
    r = admin.request("PUT", "/v1/secrets/1BAD", {"value": "x"})
    assert r.status == 400 and "'1BAD'" in r.json()["error"]["message"]
    for body in ({"value": ""}, {"value": 5}, {}, {"value": "x", "other": 1}):
        r = admin.request("PUT", "/v1/secrets/OK", body)
        assert r.status == 400, body
    assert admin.get("/v1/secrets") == {"secrets": []}


def test_grants_are_checked_shown_and_listed_as_used_by(admin: AdminClient) -> None:
    r = admin.request("POST", "/v1/scripts", {"name": "g1", "language": "python",
                                              "secrets": ["NOPE"]})  # fmt: skip
    assert r.status == 404 and "unknown secret 'NOPE'" in r.json()["error"]["message"]
    admin.call("PUT", "/v1/secrets/API_TOKEN", {"value": VALUE})
    script = admin.create("g1", secrets=["API_TOKEN"])
    assert script["settings"]["secrets"] == ["API_TOKEN"]
    assert admin.get("/v1/secrets")["secrets"][0]["used_by"] == ["g1"]
    r = admin.request("PATCH", "/v1/scripts/g1", {"secrets": ["API_TOKEN", "OTHER"]})
    assert r.status == 404 and "unknown secret 'OTHER'" in r.json()["error"]["message"]
    r = admin.request("PATCH", "/v1/scripts/g1", {"env": [{"key": "API_TOKEN", "value": "v"}]})
    assert r.status == 400 and "env variable too" in r.json()["error"]["message"]
    admin.call("PATCH", "/v1/scripts/g1", {"secrets": []})
    assert admin.get("/v1/secrets")["secrets"][0]["used_by"] == []


def test_openapi_describes_the_secret_routes(admin: AdminClient) -> None:
    doc = admin.get("/openapi.json")
    assert set(doc["paths"]["/v1/secrets/{name}"]) == {"put", "delete"}
    assert "get" in doc["paths"]["/v1/secrets"]
    for name in ("ScriptCreate", "ScriptUpdate", "ScriptRedeploy"):
        assert "secrets" in doc["components"]["schemas"][name]["properties"]
