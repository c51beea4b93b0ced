def test_append_then_read(evt):
    appended = evt("append", "order-1", "order.placed", '{"total": 5}')
    assert appended.exit_code == 0, appended
    [event] = evt("read").json()
    assert event["stream"] == "order-1" and event["data"] == {"total": 5}
