"""The whole flow on fakes: register, email, confirm, login, me."""


def register(client, email, password="correct horse battery", **extra):
    return client.post("/auth/register", json={"email": email, "password": password, **extra})


def test_register_emails_a_code_and_confirming_it_allows_login(system, unique_email):
    email = unique_email()
    client = system.client

    created = register(client, email, name="Ada")
    assert created.status_code == 201
    assert created.json == {"id": created.json["id"], "email": email, "status": "pending_verification"}

    [code] = system.codes_for(email)
    confirmed = client.post("/auth/confirm", json={"email": email, "code": code})
    assert confirmed.status_code == 200
    assert confirmed.json["status"] == "verified"

    login = client.post("/auth/login", json={"email": email, "password": "correct horse battery"})
    assert login.status_code == 200
    assert login.json["token_type"] == "Bearer"
    assert login.json["expires_in"] == 900

    me = client.get("/auth/me", headers={"Authorization": f"Bearer {login.json['access_token']}"})
    assert me.status_code == 200
    assert me.json["email"] == email
    assert me.json["name"] == "Ada"
    assert me.json["status"] == "verified"


def test_the_email_has_text_and_html_parts_with_the_code_and_its_validity(system, unique_email):
    email = unique_email()
    register(system.client, email)
    [message] = system.outbox
    assert message.recipients == [email]
    assert "10 minutes" in message.body
    [code] = system.codes_for(email)
    assert code in message.html
    assert code not in message.subject
