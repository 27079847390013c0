from __future__ import annotations

from django.http import JsonResponse
from django.urls import include, path


def healthz(request):
    return JsonResponse({"status": "ok"})


urlpatterns = [
    path("_allauth/", include("allauth.headless.urls")),
    path("healthz", healthz),
]
