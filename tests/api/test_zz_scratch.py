import io, json
from PIL import Image
from tests.conftest import png_bytes

def show(r):
    print(r.request.method, r.request.url, r.status_code, r.text[:300])

def test_probe(client, alice):
    h = alice["headers"]
    t = client.post("/v2/task/", headers=h, json={"name": "t"}).json()
    for body in [{"production_version": "abc"}, {"name": "x"*300}, {"name": "a\x00b"}, {"webhook_url": 5}, {"description": {"a": 1}}]:
        try:
            show(client.patch(f"/v2/task/{t['id']}", headers=h, json=body))
        except Exception as e:
            print("EXC", body, repr(e)[:200])
    for q in ["?search=%00", "?search=%25", "?page=0", "?page_size=5000"]:
        try:
            show(client.get("/v2/task/" + q, headers=h))
        except Exception as e:
            print("EXC", q, repr(e)[:200])
    for rec in [{"_url": "http://[::1"}, {"_url": "http://host:99999/"}, {"_url": "http://\u00e9\u00e9.invalid/"}, {"_url": "ftp://x/"}]:
        try:
            show(client.post("/v2/training-image/", headers=h, json={"records": [rec]}))
        except Exception as e:
            print("EXC", rec, repr(e)[:200])
    # 16-bit png, P with transparency
    for mode, fmt in [("I;16", "PNG"), ("P", "PNG"), ("LA", "PNG"), ("CMYK", "JPEG"), ("1", "PNG")]:
        img = Image.new(mode, (20, 20))
        buf = io.BytesIO()
        kw = {"transparency": 0} if mode == "P" else {}
        img.save(buf, fmt, **kw)
        try:
            show(client.post("/v2/training-image/", headers=h, files={"img_path": ("a.png", buf.getvalue(), "image/png")}))
        except Exception as e:
            print("EXC", mode, repr(e)[:300])
    # MPO
    buf = io.BytesIO()
    a = Image.new("RGB", (30, 20), "red"); b = Image.new("RGB", (30, 20), "blue")
    a.save(buf, "MPO", save_all=True, append_images=[b])
    show(client.post("/v2/training-image/", headers=h, files={"img_path": ("a.jpg", buf.getvalue(), "image/jpeg")}))
    show(client.post("/v2/task/", headers=h, content=b"--x\r\nbad", headers_extra=None) if False else client.post("/v2/task/", headers={**h, "content-type": "multipart/form-data; boundary=x"}, content=b"--x\r\nContent-Disposition: form-data\r\n\r\nbad"))
    show(client.post("/v2/task/", headers={**h, "content-type": "multipart/form-data"}, content=b"junk"))
    show(client.post("/v2/task/", headers={**h, "Authorization": "Token a\x01b"}, json={"name": "x"}))
