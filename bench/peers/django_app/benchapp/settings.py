"""Settings of the Django upload app that mod_secupload replaces (benchmark peer).

Only what the app needs: no database, no sessions, no admin. Storage dir, key
and temp dir come from the environment set by bench/run.
"""
import os
import secrets

BASE_DIR = os.path.dirname(os.path.abspath(__file__))
SECRET_KEY = os.environ.get("BENCH_DJANGO_SECRET", secrets.token_hex(32))
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = []
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
]
ROOT_URLCONF = "benchapp.urls"
WSGI_APPLICATION = "benchapp.wsgi.application"
DATABASES = {}
USE_TZ = True
# Django's defaults: files over 2.5 MB are spooled to a temporary file (in
# plaintext) by TemporaryFileUploadHandler before the view sees them.
FILE_UPLOAD_TEMP_DIR = os.environ.get("BENCH_DJANGO_TMP") or None
UPLOAD_STORAGE_DIR = os.environ.get("BENCH_DJANGO_STORAGE", "/tmp")
UPLOAD_KEY = bytes.fromhex(os.environ.get("BENCH_DJANGO_KEY_HEX", secrets.token_hex(32)))
LOGGING_CONFIG = None
